"""A user's own module named as ``package.module:factory`` (the CLI's export target, a sweep's
``factory`` entry)."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import torch

from edgesdk.errors import UsageError


def load_factory(target: str) -> torch.nn.Module:
    """'package.module:factory' -> the nn.Module the factory returns (or the module object it names).

    The current folder is put on ``sys.path`` first, so a module beside the user imports, as
    with ``python -m``. Anything else than an nn.Module is a UsageError naming what came back.
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"{target!r} must look like package.module:factory")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"cannot import {module_name!r}: {error}") from None
    factory = getattr(module, attribute, None)
    if factory is None:
        raise UsageError(f"{module_name!r} has no attribute {attribute!r}")
    model = factory() if callable(factory) else factory
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{target} returned a {type(model).__name__}, not a torch.nn.Module")
    return model
