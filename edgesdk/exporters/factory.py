"""A user's own module named as ``package.module:factory`` or ``path/to/mods.py:factory`` (the
CLI's export target, a sweep's ``factory`` entry)."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

from edgesdk.errors import UsageError


def load_factory(target: str) -> torch.nn.Module:
    """'package.module:factory' or 'path/to/mods.py:factory' -> the nn.Module the factory returns
    (or the module object it names).

    A dotted name imports with the current folder first on ``sys.path``, so a module beside the
    user imports, as with ``python -m``. A file path (ending in ``.py``, relative to the current
    folder or absolute) is run as that file, with its own folder on ``sys.path`` so its siblings
    import, as with ``python path/to/mods.py``. Anything else than an nn.Module is a UsageError
    naming what came back.
    """
    module_name, _, attribute = target.rpartition(":")  # the last colon: a path may hold one
    if not module_name or not attribute:
        raise UsageError(f"{target!r} must look like package.module:factory or path/to/file.py:factory")
    if module_name.endswith(".py"):
        module = _import_file(Path(module_name))
    else:
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


def _import_file(path: Path) -> ModuleType:
    """Run the Python file PATH as a module named after it, its folder first on ``sys.path``."""
    if not path.is_file():
        raise UsageError(f"cannot import {str(path)!r}: no such file (from {Path.cwd()})")
    path = path.resolve()
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) and Path(loaded.__file__).resolve() == path:
        return loaded
    if loaded is not None:  # another module took the name: keep it, load this file under a name of its own
        name = f"edgesdk_user_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {str(path)!r}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, pickling and torch.export look modules up by name
    try:
        spec.loader.exec_module(module)
    except ImportError as error:
        del sys.modules[name]
        raise UsageError(f"cannot import {str(path)!r}: {error}") from None
    except BaseException:
        del sys.modules[name]
        raise
    return module
