"""The model registry: family name -> how to build, load and export it.

Each family module (``edgesdk/models/<family>.py``) ends with one ``FAMILY = Family(...)``.
The registry imports family modules lazily, so ``edgesdk models`` lists what is installed
and a family that fails to import is reported, not hidden.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from edgesdk.errors import CheckpointError, UsageError
from edgesdk.models.checkpoints import load_checkpoint, load_state_dict_strict
from edgesdk.models.info import ModelInfo, attach_model_info, model_info
from edgesdk.models.options import ExportOptions, NoExportOptions
from edgesdk.spec import ExportSpec

__all__ = ["Family", "ModelInfo", "Preset", "attach_model_info", "create_model", "get_family", "model_info"]

log = logging.getLogger(__name__)

# family name -> module path. A family lands by adding its line here and its file.
FAMILY_MODULES: dict[str, str] = {
    "lmuformer": "edgesdk.models.lmuformer",
    "ecoformer": "edgesdk.models.ecoformer",
    "slab": "edgesdk.models.slab",
    "lighthubert": "edgesdk.models.lighthubert",
}


@dataclass(frozen=True)
class Preset:
    """A named configuration.

    ``config`` is the family's frozen config dataclass. ``small`` marks presets cheap enough
    for the default test run (every generic test is parametrized over small presets).
    """

    name: str
    config: Any
    description: str = ""
    small: bool = False


@dataclass(frozen=True)
class Family:
    """What a model family supplies to the rest of edgesdk.

    Attributes:
        name: registry name ("lmuformer").
        build: config -> nn.Module (randomly initialised, eval mode not required).
        presets: preset name -> Preset.
        remap_checkpoint: the authors' state_dict -> edgesdk's keys. Pure; must report
            keys it cannot place rather than drop them (raise CheckpointError).
        recipe: (model, mode, options) -> ExportSpec. ``mode`` is one of ``modes``; ``options``
            is an instance of ``export_options``, already parsed and checked. Call it through
            ``export_spec``, which parses user input first.
        export_options: the family's frozen ExportOptions dataclass, declared beside the recipe.
        config_from_checkpoint: optional (checkpoint container, preset config) -> config, for
            checkpoints that carry their architecture (fairseq cfg, yacs config).
        modes: the export modes this family supports.
        description: one line for ``edgesdk models``.
        list_subnets: optional hook of supernet families: (preset name or None for the
            family's default) -> one row per named subnet (``edgesdk models FAMILY --subnets``).
        sample_subnets: optional hook of supernet families: (count, seed, preset name or None)
            -> rows of randomly drawn valid subnets, reproducible for a seed (``--sample N``).
        checkpoint_layout_fields: config fields that a checkpoint's tensors decide (e.g. SLAB's
            norm layout) and that may differ from the preset without counting as a disagreement.
    """

    name: str
    build: Callable[[Any], torch.nn.Module]
    presets: Mapping[str, Preset]
    remap_checkpoint: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
    recipe: Callable[[torch.nn.Module, str, Any], ExportSpec]
    export_options: type[ExportOptions] = NoExportOptions
    config_from_checkpoint: Callable[[Mapping[str, Any], Any], Any] | None = None
    modes: tuple[str, ...] = ("full",)
    description: str = ""
    list_subnets: Callable[[str | None], list[dict[str, Any]]] | None = None
    sample_subnets: Callable[[int, int, str | None], list[dict[str, Any]]] | None = None
    checkpoint_layout_fields: tuple[str, ...] = ()

    def parse_options(self, mode: str, options: ExportOptions | Mapping[str, Any] | None = None) -> ExportOptions:
        """User input (CLI text or Python values, by name) -> this family's typed options.

        The one place options are read: an unknown name, a wrong type or an option of another
        mode raises UsageError listing the valid options with their types.
        """
        if isinstance(options, ExportOptions):
            if not isinstance(options, self.export_options):
                raise UsageError(f"{self.name} takes {self.export_options.__name__}, not {type(options).__name__}")
            options.check_mode(mode)
            return options
        return self.export_options.parse(options or {}, mode)

    def export_spec(self, model: torch.nn.Module, mode: str = "full",
                    options: ExportOptions | Mapping[str, Any] | None = None, **values: Any) -> ExportSpec:
        """Parse the options (typed, a mapping, or keywords) and run the family's recipe."""
        if values:
            if options is not None:
                raise UsageError("give export options either as an object/mapping or as keywords, not both")
            options = values
        return self.recipe(model, mode, self.parse_options(mode, options))


class FamilyUnavailable(Exception):
    pass


def _import_family(name: str) -> Family:
    module_path = FAMILY_MODULES[name]
    try:
        module = importlib.import_module(module_path)
    except ModuleNotFoundError as error:
        if error.name == module_path:
            raise FamilyUnavailable(f"family {name!r} is not implemented yet") from None
        raise
    return module.FAMILY


def available_families() -> dict[str, Family]:
    """Families that import, by name (unimplemented ones are left out)."""
    families = {}
    for name in FAMILY_MODULES:
        try:
            families[name] = _import_family(name)
        except FamilyUnavailable:
            log.debug("family %s not implemented", name)
    return families


def get_family(name: str) -> Family:
    if name not in FAMILY_MODULES:
        raise UsageError(f"unknown model family {name!r}; known: {', '.join(FAMILY_MODULES)}")
    try:
        return _import_family(name)
    except FamilyUnavailable as error:
        raise UsageError(str(error)) from None


def get_preset(family: Family, preset: str | None) -> Preset:
    if preset is None:
        raise UsageError(f"{family.name} needs --preset; one of: {', '.join(family.presets)}")
    if preset not in family.presets:
        raise UsageError(
            f"unknown preset {preset!r} for {family.name}; one of: {', '.join(family.presets)}"
        )
    return family.presets[preset]


def preset_from_checkpoint(family: Family, container: Mapping[str, Any], source: str) -> tuple[str | None, Any]:
    """(preset name or None, config) for a checkpoint that carries its whole architecture.

    The checkpoint decides when every preset it accepts leads to the same config (a complete
    config, or shapes that fit one preset only); the name is the preset with exactly that
    config (None when none has it). Otherwise: UsageError, the preset must be given.
    """
    configs, refusals = [], []
    for preset in family.presets.values():
        if family.config_from_checkpoint is None:
            break
        try:
            configs.append(family.config_from_checkpoint(container, preset.config))
        except UsageError as error:  # CheckpointError included: the checkpoint is not this preset's
            refusals.append(error)
    if not configs and refusals:
        raise refusals[0]
    if not configs or any(other != configs[0] for other in configs[1:]):
        raise UsageError(f"{family.name} needs --preset: {source} does not carry its whole architecture; "
                         f"one of: {', '.join(family.presets)}")
    named = [name for name, preset in family.presets.items() if preset.config == configs[0]]
    return (named[0] if named else None), configs[0]


def check_preset_agrees(family: Family, preset: Preset, config: Any, container: Mapping[str, Any], source: str) -> None:
    """Refuse a checkpoint whose config differs from the preset asked for, naming both.

    Fields in ``family.checkpoint_layout_fields`` may follow the checkpoint's tensors silently.
    """
    if not is_dataclass(config) or config == preset.config:
        return
    differences = [f"{item.name} {getattr(preset.config, item.name)!r} vs {getattr(config, item.name)!r}"
                   for item in fields(config)
                   if item.name not in family.checkpoint_layout_fields
                   and getattr(preset.config, item.name) != getattr(config, item.name)]
    if differences:
        try:
            fits, _ = preset_from_checkpoint(family, container, source)
            hint = (f"use --preset {fits} or " if fits else "") + "leave --preset out to build what the checkpoint describes"
        except UsageError:
            hint = f"pick the preset the checkpoint was trained as (one of: {', '.join(family.presets)})"
        raise UsageError(f"--preset {preset.name} and the config in {source} disagree ({'; '.join(differences)}, "
                         f"preset vs checkpoint); {hint}")


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def create_model(
    name: str,
    preset: str | None = None,
    checkpoint: str | Path | None = None,
    seed: int | None = 0,
) -> torch.nn.Module:
    """Build a registered model in eval mode, loading ``checkpoint`` strictly when given.

    Without a checkpoint the weights are seeded random (``seed``), so tests and demos are
    reproducible. ``preset`` may be left out when the checkpoint carries its whole architecture
    (a LightHuBERT fairseq cfg, an edgesdk-trained LMUFormer's config); when both are given they
    must agree, else UsageError names both. The returned module carries a ``ModelInfo``
    (``model_info(model)``: family, preset, config, parameters, checkpoint and its sha256,
    whether the weights are random) for the manifest.
    """
    family = get_family(name)
    container: dict[str, Any] | None = None
    if checkpoint is not None and preset is None:
        container = load_checkpoint(checkpoint)
        preset_name, config = preset_from_checkpoint(family, container, str(checkpoint))
    else:
        chosen = get_preset(family, preset)
        preset_name, config = chosen.name, chosen.config
        if checkpoint is not None:
            container = load_checkpoint(checkpoint)
            if family.config_from_checkpoint is not None:
                config = family.config_from_checkpoint(container, config)
                check_preset_agrees(family, chosen, config, container, str(checkpoint))
    if seed is not None:
        torch.manual_seed(seed)
    model = family.build(config)
    checkpoint_sha256 = None
    if container is not None:
        state_dict = container["state_dict"]
        try:
            remapped = family.remap_checkpoint(state_dict)
        except CheckpointError as error:
            raise CheckpointError(f"{checkpoint}: {error}") from None
        load_state_dict_strict(model, remapped, source=str(checkpoint))
        checkpoint_sha256 = container["sha256"]
    model.eval()
    attach_model_info(model, ModelInfo(
        family=family.name,
        preset=preset_name,
        config=config,
        parameters=count_parameters(model),
        checkpoint=str(checkpoint) if checkpoint is not None else None,
        checkpoint_sha256=checkpoint_sha256,
        random_weights=container is None,
        seed=seed if container is None else None,
    ))
    return model


def preset_parameters(family: Family, preset: str) -> int:
    """Parameter count of a preset, built on the meta device (no memory, no init time)."""
    config = get_preset(family, preset).config
    try:
        with torch.device("meta"):
            return count_parameters(family.build(config))
    except (RuntimeError, NotImplementedError, TypeError):
        # A build step that needs real values (e.g. numpy on a tensor): build on the CPU.
        return count_parameters(family.build(config))
