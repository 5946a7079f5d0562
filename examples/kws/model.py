"""The keyword spotter's architecture and how to load the shipped checkpoint.

The model is edgesdk's own LMUFormer (``edgesdk.models.lmuformer``, non-spiking variant), built
from the family's config dataclass with a 12-class head and a width between the ``tiny`` preset
(32 channels) and the authors' Speech Commands model (256). The checkpoint stores this config
next to the weights, so ``load_kws_model`` rebuilds exactly what was trained.

``load_kws_model`` is ``edgesdk.create_model`` with the architecture read from the checkpoint's
``config`` entry, and the manifest's preset named ``kws``.
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
    """Build the LMUFormer the checkpoint's ``config`` describes and load its weights strictly.

    ``create_model`` takes the whole architecture from the checkpoint's ``config`` (the
    lmuformer family's ``config_from_checkpoint``), so no preset is named.
    """
    from dataclasses import replace

    import edgesdk
    from edgesdk.errors import CheckpointError
    from edgesdk.models.checkpoints import load_checkpoint
    from edgesdk.models.info import attach_model_info, model_info

    if not isinstance(load_checkpoint(checkpoint)["extra"].get("config"), dict):
        raise CheckpointError(f"{checkpoint} has no 'config' entry; it is not a keyword-spotter checkpoint "
                              "written by examples/kws/train.py")
    model = edgesdk.create_model("lmuformer", checkpoint=checkpoint)
    # the manifest names the trained configuration, not the preset that supplied defaults
    attach_model_info(model, replace(model_info(model), preset=KWS_PRESET))
    return model
