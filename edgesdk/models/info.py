"""ModelInfo: what edgesdk knows about a model it built, attached once by ``create_model``.

The facts travel with the module as one frozen value under the documented attribute
``edgesdk_model_info``; read it with ``model_info(model)`` (None for a user's own module) and
replace it whole with ``attach_model_info`` — nobody edits it in place. The exporter turns it
into the manifest's ``model`` section with ``to_manifest``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ATTRIBUTE = "edgesdk_model_info"


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a registered model.

    Attributes:
        family: registry name ("lmuformer").
        preset: the preset the model was built from (the manifest names it); None when the
            checkpoint's own config matches no preset.
        config: the family's frozen config dataclass the model was built with (after any
            checkpoint config was applied).
        parameters: parameter count of the module (of the extracted subnet, for a subnet).
        checkpoint: the checkpoint path as given, or None.
        checkpoint_sha256: sha256 of the checkpoint file, or None.
        random_weights: True when no checkpoint was loaded: the weights are the initialisation.
        seed: the torch seed of that initialisation (None: unseeded), for random weights.
    """

    family: str
    preset: str | None
    config: Any
    parameters: int
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    random_weights: bool = False
    seed: int | None = None

    @property
    def weights(self) -> str:
        """"checkpoint", "seeded-random" or "random": where the weights came from."""
        if not self.random_weights:
            return "checkpoint"
        return "random" if self.seed is None else "seeded-random"

    def to_manifest(self) -> dict[str, Any]:
        """The manifest's ``model`` facts (the config stays out: the preset and hash name it)."""
        return {
            "family": self.family,
            "preset": self.preset,
            "parameters": self.parameters,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "weights": self.weights,
        }


def attach_model_info(model: Any, info: ModelInfo) -> None:
    """Attach ``info`` to ``model`` (replacing any earlier value as a whole)."""
    if not isinstance(info, ModelInfo):
        raise TypeError(f"attach_model_info takes a ModelInfo, not {type(info).__name__}")
    # object.__setattr__ keeps nn.Module's attribute hooks out of it: this is plain data.
    object.__setattr__(model, ATTRIBUTE, info)


def model_info(model: Any) -> ModelInfo | None:
    """The ModelInfo ``create_model`` attached to ``model``, or None for any other module."""
    info = getattr(model, ATTRIBUTE, None)
    return info if isinstance(info, ModelInfo) else None
