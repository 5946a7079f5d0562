"""Interrupt requests that a converter cannot swallow.

The CLI's signal handlers call ``request``; long library work calls ``check`` after each
stage, so an interrupt that a converter caught and ignored still stops the export. Torch-free.
"""
from __future__ import annotations

import signal

_pending: int | None = None


class Interrupted(KeyboardInterrupt):
    """A SIGINT, SIGTERM or SIGHUP; ``exit_code`` is 128 + the signal number (DESIGN.md)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


def request(signum: int) -> None:
    """Remember that signal ``signum`` asked the process to stop."""
    global _pending
    _pending = signum


def pending() -> int | None:
    """The signal number of an interrupt not yet acted on, or None."""
    return _pending


def check() -> None:
    """Raise Interrupted if an interrupt was requested (and forget it)."""
    global _pending
    signum, _pending = _pending, None
    if signum is not None:
        raise Interrupted(signum)
