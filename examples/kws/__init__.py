"""Keyword-spotting example: synthesize, train, evaluate, demo (run as python -m examples.kws.<script>)."""
