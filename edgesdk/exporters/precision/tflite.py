"""TFLite reduced precision through ai-edge-quantizer recipes.

- int8-dynamic: ``dynamic_wi8_afp32`` (per-channel int8 weights, activations quantized on the fly).
- int8-weight-only: ``weight_only_wi8_afp32`` (int8 weights dequantized to float before each op:
  smaller file, float compute).
- fp16: the FLOAT_CASTING algorithm on every supported op (float16 weights, float32 compute).
- int8-static: ``static_wi8_ai8`` (int8 weights and activations, full integer), calibrated on
  real data; ``activation_bits=16`` uses ``static_wi8_ai16`` (16-bit activations, for NPUs that
  take them). The file's inputs and outputs become integer: their scale and zero point are
  recorded (:func:`io_quantization`) so the runtime quantizes feeds and dequantizes outputs.

What stays float: the family's weights (found by content, as ``exporters/quantize.py`` does)
and the user's ``--keep-float`` patterns (searched in TFLite op names and op scopes, i.e. output
tensor names).
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgesdk.errors import BackendUnavailable, ConversionError, UsageError
from edgesdk.exporters.capture import ConverterLog
from edgesdk.exporters.precision import A16_HEADROOM, KeptFloat, PrecisionRecipe, compile_patterns
from edgesdk.exporters.quantize import ops_to_keep_float, quantizer_version

# TFLite schema TensorType values the counts below look for.
_INT8, _INT16, _FLOAT16 = 9, 7, 1
SCHEMES = {
    "int8-dynamic": "dynamic_wi8_afp32 (per-channel int8 weights, float32 activations quantized per call)",
    "int8-weight-only": "weight_only_wi8_afp32 (per-channel int8 weights dequantized before each op, float32 compute)",
    "fp16": "FLOAT_CASTING (float16 weights, dequantized to float32 for compute)",
    "int8-static": "static_wi8_ai8 (per-channel int8 weights, int8 activations, full integer; calibrated)",
    "int8-static-a16": f"static_wi8_ai16 (per-channel int8 weights, int16 activations; calibrated, ranges widened "
                       f"{A16_HEADROOM:g}x)",
}


def op_scopes(path: Path) -> list[tuple[str, str]]:
    """(TFLite op name, scope) of every op: what --keep-float patterns search."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as flatbuffer

    model = flatbuffer.read_model(path)
    found = []
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            name = flatbuffer.TFL_OP_CODE_TO_NAME.get(model.operatorCodes[op.opcodeIndex].builtinCode, "?")
            found.append((name, flatbuffer.get_op_scope(op, subgraph.tensors)))
    return found


def _internal_divisions(path: Path) -> list[tuple[str, str]]:
    """("DIV", scope) of every DIV op whose outputs are not outputs of its subgraph."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as flatbuffer

    model = flatbuffer.read_model(path)
    found = []
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            name = flatbuffer.TFL_OP_CODE_TO_NAME.get(model.operatorCodes[op.opcodeIndex].builtinCode, "?")
            if name == "DIV" and not set(op.outputs) & set(subgraph.outputs):
                found.append((name, flatbuffer.get_op_scope(op, subgraph.tensors)))
    return found


def _builtin_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    return {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}


def quantized_op_counts(model: Path, types: Sequence[int]) -> dict[str, int]:
    """Ops of the written file that take a tensor of one of ``types``, counted by op name.

    A weight that is dequantized before its op (weight-only, fp16) counts for the op it feeds.
    """
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as flatbuffer

    names = _builtin_names()
    parsed = flatbuffer.read_model(model)
    counts: Counter[str] = Counter()
    for subgraph in parsed.subgraphs:
        dequantized = set()
        for op in subgraph.operators:
            name = names.get(parsed.operatorCodes[op.opcodeIndex].builtinCode, "?")
            if name == "DEQUANTIZE" and all(i >= 0 and subgraph.tensors[i].type in types for i in op.inputs):
                dequantized.update(op.outputs)
        for op in subgraph.operators:
            name = names.get(parsed.operatorCodes[op.opcodeIndex].builtinCode, "?")
            if name in ("DEQUANTIZE", "QUANTIZE"):
                continue
            if any(i >= 0 and (subgraph.tensors[i].type in types or i in dequantized) for i in op.inputs):
                counts[name] += 1
    return dict(counts)


def io_quantization(path: Path, input_map: Mapping[str, str], output_map: Mapping[str, str]) -> dict[str, Any] | None:
    """Logical name -> {dtype, scale, zero_point} of every integer input/output; None if all are float."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(str(path)).get_signature_runner()
    facts: dict[str, Any] = {"inputs": {}, "outputs": {}}
    for key, details, names in (("inputs", runner.get_input_details(), input_map),
                                ("outputs", runner.get_output_details(), output_map)):
        for logical, own in names.items():
            info = details[own]
            dtype = np.dtype(info["dtype"])
            if dtype.kind in "iu":
                scale, zero_point = info["quantization"]
                if not scale > 0:
                    raise ConversionError(f"{path.name}: integer {key[:-1]} {logical!r} has no quantization scale")
                facts[key][logical] = {"dtype": dtype.name, "scale": float(scale), "zero_point": int(zero_point)}
    return facts if facts["inputs"] or facts["outputs"] else None


def quantize_tflite_precision(
    source: Path,
    target: Path,
    precision: str,
    converter_log: ConverterLog,
    keep_float: Mapping[str, np.ndarray] | None = None,
    keep_reasons: Mapping[str, str] | None = None,
    keep_patterns: Sequence[str] = (),
    calibration_feeds: Sequence[Mapping[str, np.ndarray]] | None = None,
    calibration_facts: Mapping[str, Any] | None = None,
    activation_bits: int = 8,
    stateless: bool = True,
) -> PrecisionRecipe:
    """Write ``target``, the ``precision`` form of the float ``source``; return its recipe.

    ``stateless``: the graph has no state pairs (int8-static then keeps divisions float).

    ``calibration_feeds`` (int8-static): dicts keyed by the file's own input names.
    """
    try:
        with converter_log.capture("import ai_edge_quantizer"):
            from ai_edge_quantizer import qtyping, quantizer, recipe
            from ai_edge_quantizer.algorithm_manager import AlgorithmName
    except ImportError as error:
        raise BackendUnavailable(f"TFLite {precision} needs ai-edge-quantizer ({error}); pip install 'edgesdk[export]'") from None
    if activation_bits not in (8, 16):
        raise UsageError(f"activation_bits must be 8 or 16, not {activation_bits}")
    scheme_key = "int8-static-a16" if precision == "int8-static" and activation_bits == 16 else precision
    family_ops, found = ops_to_keep_float(source, dict(keep_float or {}))
    reasons = dict(keep_reasons or {})
    kept = [KeptFloat(tuple(sorted({scope for _, scope in family_ops})),
                      "; ".join(dict.fromkeys(reasons.get(name, f"the family's recipe keeps {name} float") for name in found)))] if found else []
    user_ops = []
    scopes = op_scopes(source)
    # A full-integer DIV aborts when its quantized divisor rounds to the zero point (LiteRT's
    # div.cc refuses it: seen on SLAB's normalisers), so divisions stay float in int8-static.
    # Only in stateless graphs: in a streaming step (LMUFormer's running mean) ai-edge-quantizer 0.10
    # then leaves the signature pointing at a tensor it replaced ("Tensor data is null" at run time).
    divisions = _internal_divisions(source) if precision == "int8-static" and stateless else []
    if divisions:
        kept.append(KeptFloat(tuple(sorted({f"DIV {scope}" for _, scope in divisions})),
                              "normaliser divisions: an int8 divisor can round to its zero point, and LiteRT "
                              "then refuses to run the file (division by zero)"))
    for pattern, compiled in zip(keep_patterns, compile_patterns(keep_patterns)):
        hits = [(name, scope) for name, scope in scopes if compiled.search(name) or compiled.search(scope)]
        user_ops += hits
        if hits:
            kept.append(KeptFloat(tuple(sorted({f"{name} {scope}" for name, scope in hits})), f"--keep-float {pattern}"))
    try:
        with converter_log.capture(f"ai_edge_quantizer {SCHEMES[scheme_key].split()[0]}"):
            engine = quantizer.Quantizer(str(source))
            if precision == "int8-dynamic":
                engine.load_quantization_recipe(recipe.dynamic_wi8_afp32())
            elif precision == "int8-weight-only":
                engine.load_quantization_recipe(recipe.weight_only_wi8_afp32())
            elif precision == "int8-static":
                engine.load_quantization_recipe(recipe.static_wi8_ai16() if activation_bits == 16 else recipe.static_wi8_ai8())
            elif precision == "fp16":
                engine.update_quantization_recipe(
                    regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                    algorithm_key=AlgorithmName.FLOAT_CASTING,
                    op_config=qtyping.OpQuantizationConfig(
                        weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
                        compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True))
            else:
                raise UsageError(f"TFLite cannot be written in {precision}")
            for op_name, scope in list(family_ops) + [(qtyping.TFLOperationName(n), s) for n, s in user_ops + divisions
                                                      if n in {o.value for o in qtyping.TFLOperationName}]:
                # The scope is the op's output tensor names; anchor it so no other op matches.
                engine.update_quantization_recipe(regex=f"^{re.escape(scope)}$", operation_name=op_name,
                                                  algorithm_key=AlgorithmName.NO_QUANTIZE)
            if precision == "int8-static":
                if not calibration_feeds:
                    raise UsageError("int8-static needs calibration data (--calibration-data PATH)")
                from ai_edge_litert.interpreter import Interpreter

                signature = next(iter(Interpreter(str(source)).get_signature_list()))
                calibration = engine.calibrate({signature: [dict(f) for f in calibration_feeds]}, num_threads=1)
                if activation_bits == 16:  # see A16_HEADROOM
                    calibration = {tensor: {key: value * A16_HEADROOM if key in ("min", "max") else value
                                            for key, value in ranges.items()} for tensor, ranges in calibration.items()}
                quantized = engine.quantize(calibration).quantized_model
            else:
                quantized = engine.quantize().quantized_model
    except UsageError:
        raise
    except Exception as error:  # the quantizer raises many unrelated types
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConversionError(f"TFLite {precision} quantization of {source.name} failed: {first_line}") from error
    target.write_bytes(quantized)
    types = (_FLOAT16,) if precision == "fp16" else (_INT8, _INT16)
    counts = quantized_op_counts(target, types)
    if not counts:
        raise ConversionError(f"TFLite {precision}: the quantizer wrote {target.name} without any quantized op")
    return PrecisionRecipe(
        tool=quantizer_version(), scheme=SCHEMES[scheme_key], quantized_ops=counts, kept_float=tuple(kept),
        calibration=dict(calibration_facts) if calibration_facts else None, source=source.name,
        notes=(f"float file {source.stat().st_size} bytes, this file {target.stat().st_size} bytes",),
    )
