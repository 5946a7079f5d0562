"""The keyword spotter's architecture and how to load the shipped checkpoint.

The model is edgesdk's own LMUFormer (``edgesdk.models.lmuformer``, non-spiking variant), built
from the family's config dataclass with a 12-class head and a width between the ``tiny`` preset
(32 channels) and the authors' Speech Commands model (256). The checkpoint stores this config
next to the weights, so ``load_kws_model`` rebuilds exactly what was trained.

Bridge: the lmuformer family has no ``config_from_checkpoint`` and no ``kws`` preset, so
``edgesdk.create_model("lmuformer", preset=..., checkpoint=...)`` cannot build a 12-class model.
``load_kws_model`` does what ``create_model`` does (build, strict load through the family's
remap, eval, ``edgesdk_info`` for the manifest) with the config taken from the checkpoint.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from .common import LABELS

KWS_PRESET = "kws"   # the name the manifest records for this configuration
BASE_PRESET = "tiny"


def kws_config(embed_dim: int = 64) -> Any:
    """The LMUFormerConfig of the keyword spotter: the ``tiny`` preset with 12 labelled classes."""
    from edgesdk.models.lmuformer import PRESETS

    return replace(PRESETS[BASE_PRESET].config, embed_dim=embed_dim, num_classes=len(LABELS),
                   labels=tuple(LABELS))


def config_to_container(config: Any) -> dict[str, Any]:
    """Plain data (str, int, float, list) that ``weights_only`` loading accepts."""
    data = asdict(config)
    data["labels"] = list(data["labels"])
    return data


def load_kws_model(checkpoint: str | Path) -> Any:
    """Build the LMUFormer the checkpoint's ``config`` describes and load its weights strictly."""
    from edgesdk.errors import CheckpointError
    from edgesdk.exporters.checkpoints import load_checkpoint, load_state_dict_strict
    from edgesdk.models.lmuformer import FAMILY, LMUFormerConfig
    from edgesdk.models.registry import count_parameters

    container = load_checkpoint(checkpoint)
    stored = container["extra"].get("config")
    if not isinstance(stored, dict):
        raise CheckpointError(f"{checkpoint} has no 'config' entry; it is not a keyword-spotter checkpoint "
                              "written by examples/kws/train.py")
    try:
        config = LMUFormerConfig(**{**stored, "labels": tuple(stored.get("labels", ()))})
    except TypeError as error:
        raise CheckpointError(f"{checkpoint}: its config does not fit LMUFormerConfig ({error})") from None
    model = FAMILY.build(config)
    load_state_dict_strict(model, FAMILY.remap_checkpoint(container["state_dict"]), source=str(checkpoint))
    model.eval()
    model.edgesdk_info = {
        "family": FAMILY.name,
        "preset": KWS_PRESET,
        "config": config,
        "parameters": count_parameters(model),
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": container["sha256"],
    }
    return model
