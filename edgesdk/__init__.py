"""edgesdk: efficient transformers from research checkpoints to edge devices.

    import edgesdk
    model = edgesdk.create_model("lmuformer", preset="scv2", checkpoint="best_model.pth")
    edgesdk.export(model, "out/kws", formats=("onnx", "tflite"), mode="stream")
    m = edgesdk.load("out/kws")

Importing edgesdk imports no torch: ``create_model`` and ``export`` import it when called. The
three functions below carry their full signatures, so ``help(edgesdk.export)`` shows every
argument; ``tests/test_public_api.py`` keeps them equal to the functions they call.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from edgesdk._version import __version__

__all__ = ["create_model", "export", "load", "wrap", "__version__"]

if TYPE_CHECKING:
    import numpy as np
    import torch

    from edgesdk.exporters.bundle import ExportResult
    from edgesdk.models.options import ExportOptions
    from edgesdk.runtime import Model

_MIN_SQNR_DB = 30.0  # edgesdk.runtime.compare.MIN_SQNR_DB, repeated so that importing edgesdk stays light
_DEFAULT_OPSET = 18  # edgesdk.exporters.onnx.DEFAULT_OPSET


def create_model(
    name: str,
    preset: str | None = None,
    checkpoint: str | Path | None = None,
    seed: int | None = 0,
) -> "torch.nn.Module":
    """Build a registered model (a torch ``nn.Module`` in eval mode).

    Args:
        name: the family: "lmuformer", "ecoformer", "slab" or "lighthubert" (``edgesdk models``
            lists them with their presets and parameter counts).
        preset: the architecture, e.g. "scv2" or "tiny". May be left out when the checkpoint
            carries its whole configuration; when both are given they must agree.
        checkpoint: the authors' released checkpoint file (``.pth``/``.pt``), loaded strictly:
            a missing or unexpected key is an error naming the keys. ``docs/<family>.md`` says
            where each family's checkpoints are published.
        seed: without a checkpoint the weights are seeded random (reproducible, and useless
            for a real task: ``export`` refuses them unless asked for).

    Raises UsageError (unknown family or preset) and CheckpointError (a checkpoint that does
    not fit). See ``edgesdk.models.registry.create_model``.
    """
    from edgesdk.models.registry import create_model as _create_model

    return _create_model(name, preset=preset, checkpoint=checkpoint, seed=seed)


def export(
    model: "torch.nn.Module",
    output: str | Path,
    formats: Sequence[str] = ("onnx", "tflite"),
    mode: str | None = None,
    *,
    example_inputs: Mapping[str, Any] | None = None,
    states: Any = None,
    output_names: Sequence[str] | None = None,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    batch_axes: Mapping[str, int] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    force: bool = False,
    opset: int = _DEFAULT_OPSET,
    sample_inputs: str | Path | None = None,
    verbose: bool = False,
    progress: Callable[[str], None] | None = None,
    factory: str | None = None,
    command_line: str | None = None,
    quantize: str | None = None,
    min_sqnr_db: float = _MIN_SQNR_DB,
    export_options: "ExportOptions | None" = None,
    precision: str | Sequence[str] | None = None,
    calibration_data: str | Path | None = None,
    keep_float: Sequence[str] = (),
    activation_bits: int = 8,
    random_weights: bool = False,
    **recipe_options: Any,
) -> "ExportResult":
    """Export ``model`` to a validated bundle folder ``output`` (written atomically).

    Every artifact is run on the example inputs and compared with PyTorch before the bundle is
    kept; the result's ``.valid``, ``.manifest`` and ``.validation`` say how it went.

    Args:
        model: a model from ``create_model``, or any ``nn.Module`` of your own.
        output: the bundle folder. It must not exist, or be an empty folder, or (with
            ``force=True``) an earlier bundle; a folder holding anything else is refused.
        formats: "onnx" and/or "tflite".
        mode: "full" (the whole input at once) or "stream" (one step, state in and out).
            Left out: "full", or "stream" when ``states`` are given. ``mode="full"`` with
            ``states`` is refused.
        example_inputs: your own module: name -> example tensor, array or shape, in the order
            ``forward`` takes them, e.g. ``{"x": (1, 128, 16)}`` (a shape gets seeded N(0, 1)).
        states: your own streaming module: name -> shape of each state at the example batch.
            ``forward(inputs..., states...)`` returns ``(outputs..., new_states...)``; the new
            state of ``h`` is named ``h_next`` in the artifacts.
        output_names: names of the (non-state) outputs, in return order. Default: "output",
            or "output_0", "output_1", ... when there are several. ``Model.run`` and
            ``Stream.push`` return dicts keyed by these names.
        dynamic_axes: name -> {axis: symbol} kept dynamic in the ONNX file (TFLite files are
            static), e.g. ``{"x": {0: "batch", 2: "frames"}}``. The symbol "batch" is the one
            ``Model.stream(batch=N)`` fills: when an input has it, every state's batch axis
            becomes dynamic too.
        batch_axes: state name -> its batch axis, where it is not 0 (an ``nn.GRU`` state
            ``[layers, batch, hidden]`` has it at 1), e.g. ``{"h": 1}``.
        atol, rtol: validation tolerance (default: the recipe's, 1e-4 for your own module).
        force: replace an existing bundle at ``output``.
        opset: ONNX opset (18 or newer).
        sample_inputs: an .npz of extra validation inputs (stream: stacked by step on axis 0).
        verbose: echo converter output (it is always kept in the bundle's export.log).
        progress: called with one line per long step.
        factory, command_line: recorded in the manifest (the CLI fills them).
        quantize: "int8": the TFLite weights dynamic-range int8, validated by SQNR.
        min_sqnr_db: SQNR every reduced-precision output must reach.
        export_options: a registered family's typed options (``edgesdk models FAMILY`` lists
            them); or give them as keywords (``recipe_options``), e.g. ``chunk_frames=4``.
        precision: "fp32", "fp16", "int8-dynamic", "int8-weight-only", "int8-static" (or
            several): one artifact per format and precision.
        calibration_data: int8-static: a folder of WAVs or images.
        keep_float: reduced precision: regexes of ops to keep float.
        activation_bits: int8-static TFLite: 8 or 16-bit activations.
        random_weights: a registered family built without a checkpoint has seeded-random
            weights; export refuses it unless this says they are wanted (the manifest then
            records ``weights: seeded-random``, and every verb says so first).

    Raises UsageError (exit 2: bad arguments, existing output), ConversionError (exit 3: a
    converter failed), ValidationError (exit 4: an artifact disagrees with PyTorch; the bundle
    is kept and marked invalid). See ``edgesdk.exporters.bundle.export``.
    """
    from edgesdk.exporters.bundle import export as _export

    return _export(
        model, output, formats=formats, mode=mode, example_inputs=example_inputs, states=states,
        output_names=output_names, dynamic_axes=dynamic_axes, batch_axes=batch_axes, atol=atol, rtol=rtol,
        force=force, opset=opset, sample_inputs=sample_inputs, verbose=verbose, progress=progress,
        factory=factory, command_line=command_line, quantize=quantize, min_sqnr_db=min_sqnr_db,
        export_options=export_options, precision=precision, calibration_data=calibration_data,
        keep_float=keep_float, activation_bits=activation_bits, random_weights=random_weights, **recipe_options,
    )


def load(
    path: str | Path,
    backend: str = "auto",
    providers: Sequence[str] | None = None,
    strict_providers: bool = False,
    num_threads: int | None = None,
    verify_hashes: bool = True,
    provider_options: Mapping[str, Mapping[str, Any]] | None = None,
    feeds: "Mapping[str, np.ndarray] | None" = None,
    precision: str | None = None,
) -> "Model":
    """Load a bundle folder, or a lone .onnx / .tflite file, in the torch-free runtime.

    The returned ``Model`` runs numpy dicts: ``run({"x": array})`` -> ``{"output": array}``;
    a streaming bundle also gives ``stream(batch=1)`` whose ``push`` carries the state
    (``push(array)`` where the step has one input).

    Args:
        path: the bundle folder (with edgesdk.json), or a .onnx / .tflite file.
        backend: "onnxruntime", "litert", or "auto" (measures the installed ones on this
            device and keeps the fastest that fits; ``Model.backend_choice`` says why).
        providers: onnxruntime execution providers in order of preference.
        strict_providers: fail (BackendUnavailable) rather than fall back to another provider.
        num_threads: intra-op threads (None: the backend's default).
        verify_hashes: check each artifact's sha256 against the manifest.
        provider_options: onnxruntime provider name -> its options.
        feeds: the inputs you are about to run (one step's, for a stream): with "auto", only
            artifacts that accept them are candidates (a static TFLite file takes one shape).
        precision: of a bundle holding several: "fp32", "fp16", "int8-dynamic", ...

    See ``edgesdk.runtime.load``.
    """
    from edgesdk.runtime import load as _load

    return _load(path, backend=backend, providers=providers, strict_providers=strict_providers,
                 num_threads=num_threads, verify_hashes=verify_hashes, provider_options=provider_options,
                 feeds=feeds, precision=precision)


def wrap(path: Any, output: Any, **contract: Any) -> Any:
    """A bundle around a stateful .onnx/.tflite edgesdk did not write; see edgesdk.runtime.wrap.wrap."""
    from edgesdk.runtime.wrap import wrap as _wrap

    return _wrap(path, output, **contract)
