"""Capture converter chatter (Python prints, C++ logs) so it goes to export.log, not the user."""
from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from typing import Iterator


class ConverterLog:
    """Collects what converters print, section by section."""

    def __init__(self, echo: bool = False):
        self.echo = echo
        self.sections: list[tuple[str, str]] = []

    @contextlib.contextmanager
    def capture(self, title: str) -> Iterator[None]:
        """Redirect file descriptors 1 and 2 (and sys.stdout/err) while the block runs."""
        if self.echo:
            yield
            return
        sys.stdout.flush()
        sys.stderr.flush()
        with tempfile.TemporaryFile(mode="w+b") as sink:
            saved = [os.dup(1), os.dup(2)]
            python_sink = io.StringIO()
            try:
                os.dup2(sink.fileno(), 1)
                os.dup2(sink.fileno(), 2)
                with contextlib.redirect_stdout(python_sink), contextlib.redirect_stderr(python_sink):
                    yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                for fd in saved:
                    os.close(fd)
                sink.seek(0)
                text = sink.read().decode("utf-8", "replace") + python_sink.getvalue()
                self.sections.append((title, text))

    def text(self) -> str:
        return "".join(f"===== {title}\n{body}\n" for title, body in self.sections)
