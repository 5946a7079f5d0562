"""Inference backends behind one small interface (numpy in, numpy out, backend names)."""
from __future__ import annotations

from edgesdk.runtime.backends.base import Backend, available_backends, open_backend

__all__ = ["Backend", "available_backends", "open_backend"]
