"""Safe checkpoint loading: ``weights_only=True`` with a short allowlist, container unwrapping.

Released checkpoints carry a few non-tensor objects besides the weights: an
``argparse.Namespace`` of training arguments (EcoFormer), a yacs ``CfgNode`` (SLAB), a
fairseq ``cfg`` (LightHuBERT, usually plain dicts already). These are allowlisted as plain
data; anything else that needs code to unpickle is refused with a message that says so.
"""
from __future__ import annotations

import argparse
import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch

from edgesdk.errors import CheckpointError
from edgesdk.runtime.manifest import sha256_file

# Container keys that hold the weights, in the order they are looked for.
STATE_DICT_KEYS = ("model", "state_dict", "model_state_dict", "module", "net")


class _DictStandIn:
    """Stands in for a pickled dict subclass (yacs ``CfgNode``, a fairseq config).

    torch's weights-only unpickler only fills plain dicts and OrderedDicts, so creating one of
    these yields an OrderedDict: the data arrives as plain key/value pairs, and the class's
    own flags (``__dict__`` state) land on the OrderedDict's attributes, where nothing reads
    them. No code of the original class runs.
    """

    def __new__(cls, *args: Any) -> OrderedDict:  # type: ignore[misc]
        return OrderedDict()


# Fully qualified names a checkpoint may reference, and what stands in for each.
_ALLOWLIST: list[Any] = [
    argparse.Namespace,
    (_DictStandIn, "yacs.config.CfgNode"),
]


def to_plain(value: Any) -> Any:
    """Turn allowlisted objects into plain dicts and lists (tensors are kept)."""
    if isinstance(value, argparse.Namespace):
        return {k: to_plain(v) for k, v in vars(value).items()}
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(v) for v in value)
    return value


# Phrases of torch's weights-only unpickler when it meets an object it will not build (as
# opposed to bytes that are no pickle at all).
_REFUSAL_SIGNS = ("Unsupported global", "allowlisted", "Trying to call reduce", "Can only")


def _unpickler_reason(message: str) -> str:
    """The one useful line of torch's weights-only refusal (which object it met)."""
    found = re.search(r"WeightsUnpickler error:\s*([^\n]*?)(?: was not an allowed global| Please|\n|$)", message)
    return found.group(1).strip() if found else "an object outside the allowlist"


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(k, str) for k in value)
        and all(isinstance(v, torch.Tensor) for v in value.values())
    )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file safely.

    Returns ``{"state_dict": name -> tensor, "sha256": hex digest, "extra": everything else in
    the container as plain data}``. Key prefixes such as DataParallel's ``module.`` are kept:
    the family's remap decides what they mean.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(_ALLOWLIST):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not any(sign in str(error) for sign in _REFUSAL_SIGNS):
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {str(error).splitlines()[0]}") from None
        reason = _unpickler_reason(str(error))
        raise CheckpointError(
            f"{path} needs arbitrary code to unpickle, which weights_only loading refuses "
            f"({reason}). Re-save its state_dict with torch.save(model.state_dict(), ...), "
            f"or ask for the class to be allowlisted if it is plain configuration data."
        ) from None
    except Exception as error:  # torch.load meets garbage with KeyError, TypeError, struct.error, ...
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {first_line})") from None

    if _is_state_dict(loaded):
        state_dict, extra = dict(loaded), {}
    elif isinstance(loaded, Mapping):
        found = next((k for k in STATE_DICT_KEYS if _is_state_dict(loaded.get(k))), None)
        if found is None:
            raise CheckpointError(
                f"{path} holds no state_dict: looked for a tensor mapping at the top level or "
                f"under {', '.join(repr(k) for k in STATE_DICT_KEYS)}; found keys "
                f"{', '.join(map(repr, list(loaded)[:12]))}"
            )
        state_dict = dict(loaded[found])
        extra = {k: to_plain(v) for k, v in loaded.items() if k != found}
    else:
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a state_dict or a dict")
    return {"state_dict": state_dict, "sha256": sha256_file(path), "extra": extra}


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Drop ``prefix`` (e.g. DataParallel's ``module.``) where every key carries it."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return OrderedDict((k[len(prefix):], v) for k, v in state_dict.items())
    return dict(state_dict)


def _name_keys(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_state_dict_strict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load strictly; a missing, unexpected or wrongly shaped key is an error naming the keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_name_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_name_keys(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_name_keys(mismatched)}")
    if problems:
        raise CheckpointError(f"{source} does not fit this model; " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)
