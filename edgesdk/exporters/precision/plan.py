"""Which precisions one export writes, and writing them from the float artifacts.

``export(..., precision="fp32,int8-dynamic")`` builds a :class:`PrecisionPlan`; after the float
artifacts exist, :meth:`PrecisionPlan.derive` writes each reduced-precision artifact beside them
(``model.int8-dynamic.onnx`` ...), records its recipe, measures its speed against the float file
of the same format on this machine, and removes a float file the user did not ask for.
"""
from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgesdk.errors import BackendUnavailable, UsageError
from edgesdk.exporters.capture import ConverterLog
from edgesdk.exporters.precision import (
    MANIFEST_PRECISION,
    artifact_file,
    artifact_label,
    SUPPORTED,
    check_supported,
    parse_precisions,
    unmatched_patterns,
)
from edgesdk.exporters.precision.calibration import CalibrationSet, calibration_feeds, load_calibration
from edgesdk.spec import ExportSpec, as_numpy, call_module

log = logging.getLogger(__name__)

# Why a family's weights stay float, by a pattern (re.search) on the name its recipe gives them
# (spec.keep_float), so every block's copy of a weight gets the same reason.
KEEP_FLOAT_REASONS = {
    r"attn\.lmu\.A$": "LMU recurrence: eigenvalues next to 1, a rounding error compounds frame after frame",
    r"attn\.lmu\.B$": "LMU input matrix: it feeds the recurrence every frame, so its rounding error is carried "
                      "forward in the memory",
    r"^memory_kernel\d+$": "LMU memory kernel: the recurrence unrolled; its error compounds over frames",
}


def keep_float_reasons(names: Iterable[str]) -> dict[str, str]:
    """The reason of each kept-float weight name that a KEEP_FLOAT_REASONS pattern matches."""
    reasons = {}
    for name in names:
        reason = next((text for pattern, text in KEEP_FLOAT_REASONS.items() if re.search(pattern, name)), None)
        if reason is not None:
            reasons[name] = reason
    return reasons


SLOWER_THAN_FLOAT = 1.0  # a reduced-precision artifact below this speed ratio gets a warning


@dataclass(frozen=True)
class PrecisionPlan:
    """The precisions asked for and what they need (calibration data, --keep-float patterns)."""

    precisions: tuple[str, ...]
    keep_patterns: tuple[str, ...] = ()
    calibration: CalibrationSet | None = None
    activation_bits: int = 8
    skipped: tuple[str, ...] = ()

    @property
    def reduced(self) -> tuple[str, ...]:
        return tuple(p for p in self.precisions if p != "fp32")

    def derive(self, spec: ExportSpec, folder: Path, formats: Sequence[str], artifact_facts: dict[str, dict[str, Any]],
               files: dict[str, str], converter_log: ConverterLog, say: Callable[[str], None],
               min_sqnr_db: float | None = None) -> None:
        """Write every reduced-precision artifact from the float ones (``files``: label -> file name);
        ``min_sqnr_db``: the floor validation applies (ONNX int8-dynamic keeps above it what it can)."""
        from edgesdk.exporters.precision.onnx import node_names, quantize_onnx
        from edgesdk.exporters.precision.tflite import io_quantization, op_scopes, quantize_tflite_precision

        if self.keep_patterns:
            names: list[str] = []
            for fmt in formats:
                float_path = folder / files[fmt]
                names += node_names(float_path) if fmt == "onnx" else [n for pair in op_scopes(float_path) for n in pair]
            missing = unmatched_patterns(self.keep_patterns, names)
            if missing:
                raise UsageError(f"--keep-float {', '.join(map(repr, missing))} matches no op in the exported "
                                 f"{' or '.join(formats)} graph; nothing would be kept float")
        weights, reasons = dict(spec.keep_float), dict(spec.keep_float_reasons)
        if spec.find_keep_float is not None:
            say("measuring which layers must stay float")
            found, why = spec.find_keep_float()
            weights.update(found)
            reasons.update(why)
        reasons = {**keep_float_reasons(weights), **reasons}
        keep = {name: as_numpy(weight) for name, weight in weights.items()}
        workdir = folder / ".precision-work"
        workdir.mkdir()
        feeds = self._calibration_feeds(spec) if "int8-static" in self.precisions else None
        facts_of_calibration = self.calibration.facts() if self.calibration else None
        if facts_of_calibration is not None and feeds is not None:
            facts_of_calibration["feeds"] = len(feeds)
        timing_feed = _timing_feed(spec)
        for fmt in formats:
            float_path = folder / files[fmt]
            float_facts = artifact_facts[fmt]
            for precision in self.reduced:
                if precision not in SUPPORTED[fmt]:
                    say(next(line for line in self.skipped if line.startswith(f"no {fmt} {precision} ")))
                    continue
                target = folder / artifact_file(fmt, precision)
                say(f"writing {target.name} ({precision})")
                if fmt == "onnx":
                    state_pairs = [(float_facts["inputs"][s.input_name], float_facts["outputs"][s.output_name])
                                   for s in spec.states]
                    shape_feeds = {float_facts["inputs"][n]: v for n, v in timing_feed.items() if n in float_facts["inputs"]}
                    recipe = quantize_onnx(float_path, target, precision, converter_log, workdir, keep, reasons,
                                           self.keep_patterns, feeds, facts_of_calibration, state_pairs,
                                           self.activation_bits, shape_feeds, min_sqnr_db)
                    io = None
                else:
                    backend_feeds = None if feeds is None else [
                        {float_facts["inputs"][n]: v for n, v in f.items()} for f in feeds]
                    recipe = quantize_tflite_precision(float_path, target, precision, converter_log, keep,
                                                       reasons, self.keep_patterns, backend_feeds,
                                                       facts_of_calibration, self.activation_bits,
                                                       stateless=not spec.states)
                    io = io_quantization(target, float_facts["inputs"], float_facts["outputs"])
                facts = {key: value for key, value in float_facts.items() if key not in ("precision",)}
                facts.update(precision=MANIFEST_PRECISION[precision], recipe=recipe.to_manifest(),
                             float_size_bytes=float_path.stat().st_size)
                if io is not None:
                    facts["io_quantization"] = io
                ratio = speed_ratio(fmt, float_path, target, float_facts, io, timing_feed)
                facts["speed_vs_float32"] = ratio
                if ratio is not None and ratio < SLOWER_THAN_FLOAT:
                    message = (f"warning: {target.name} runs at {ratio:.3g}x the speed of {float_path.name} on this "
                               "machine (slower than float32); keep float32 as the default here")
                    log.warning(message)
                    say(message)
                label = artifact_label(fmt, precision)
                artifact_facts[label] = facts
                files[label] = target.name
        shutil.rmtree(workdir, ignore_errors=True)
        if "fp32" not in self.precisions:  # the float files were only the quantizers' source
            for fmt in formats:
                (folder / files.pop(fmt)).unlink()
                artifact_facts.pop(fmt)

    def _calibration_feeds(self, spec: ExportSpec) -> list[dict[str, np.ndarray]]:
        if self.calibration is None:
            raise UsageError("int8-static needs calibration data (--calibration-data PATH)")
        return calibration_feeds(spec, self.calibration.calibration, lambda feed: call_module(spec, feed))


def make_plan(spec: ExportSpec, formats: Sequence[str], precision: str | Sequence[str] | None,
              calibration_data: str | Path | None, keep_float: Sequence[str], activation_bits: int) -> PrecisionPlan | None:
    """Check the precision arguments against the export (UsageError before anything is written)."""
    if precision is None:
        if calibration_data is not None or keep_float:
            raise UsageError("--calibration-data and --keep-float apply to a reduced precision; add --precision")
        return None
    precisions = parse_precisions(precision)
    skipped = check_supported(precisions, formats)
    for fmt in formats:
        wanted = [p for p in precisions if p != "fp32" and p in SUPPORTED[fmt]]
        if wanted:
            _require_quantizer(fmt, wanted[0])
    reduced = [p for p in precisions if p != "fp32"]
    if reduced and spec.quantization_refused:
        raise UsageError(f"cannot export this model in {', '.join(reduced)}: {spec.quantization_refused}")
    if "int8-static" in precisions and calibration_data is None:
        raise UsageError("int8-static needs --calibration-data PATH: a folder of WAV files (audio models) or "
                         "images (vision models), split into calibration and validation files")
    if calibration_data is not None and "int8-static" not in precisions:
        raise UsageError("--calibration-data applies to int8-static; add it to --precision")
    if keep_float and not reduced:
        raise UsageError("--keep-float applies to a reduced precision; fp32 keeps everything float")
    if activation_bits != 8 and "int8-static" not in precisions:
        raise UsageError("activation_bits applies to int8-static")
    calibration = load_calibration(calibration_data, spec) if calibration_data is not None else None
    return PrecisionPlan(precisions, tuple(keep_float), calibration, activation_bits, tuple(skipped))


def _require_quantizer(fmt: str, precision: str) -> None:
    """BackendUnavailable before anything is exported when the format's quantizer is missing."""
    import importlib

    module, package = {"onnx": ("onnxruntime.quantization", "onnxruntime"),
                       "tflite": ("ai_edge_quantizer", "ai-edge-quantizer")}[fmt]
    try:
        importlib.import_module(module)
    except ImportError as error:
        raise BackendUnavailable(f"{fmt.upper() if fmt == 'onnx' else 'TFLite'} {precision} needs {package} "
                                 f"({error}); pip install 'edgesdk[export]'") from None


def _timing_feed(spec: ExportSpec) -> dict[str, np.ndarray]:
    """One call's feeds (states at their init) at the example shapes, seeded."""
    rng = np.random.default_rng(0)
    feeds = {}
    for name, example in spec.example_inputs.items():
        array = as_numpy(example)
        feeds[name] = rng.standard_normal(array.shape).astype(array.dtype) if array.dtype.kind == "f" else array.copy()
    for state in spec.states:
        feeds[state.input_name] = state.initial(state.shape[state.batch_axis])
    return feeds


def speed_ratio(fmt: str, float_path: Path, path: Path, facts: Mapping[str, Any], io: Mapping[str, Any] | None,
                feeds: Mapping[str, np.ndarray], budget_s: float = 0.1) -> float | None:
    """float time / this file's time per call on this machine, one thread (None: not measurable here)."""
    from edgesdk.runtime.backends.base import BACKEND_OF_FORMAT, open_backend
    from edgesdk.runtime.precision import IoQuantization

    quantization = IoQuantization.from_manifest(io)
    timings = []
    try:
        for candidate, quantized in ((float_path, None), (path, quantization)):
            engine = open_backend(BACKEND_OF_FORMAT[fmt], candidate, num_threads=1)
            given = quantized.quantize_feeds(feeds) if quantized else feeds
            backend_feeds = {facts["inputs"][n]: np.ascontiguousarray(v) for n, v in given.items()}
            outputs = list(facts["outputs"].values())
            engine.run(backend_feeds, outputs)
            best, spent, calls = float("inf"), 0.0, 0
            while spent < budget_s or calls < 5:
                start = time.perf_counter()
                engine.run(backend_feeds, outputs)
                elapsed = time.perf_counter() - start
                best, spent, calls = min(best, elapsed), spent + elapsed, calls + 1
            timings.append(best)
    except Exception as error:  # a backend that cannot run it here: validation reports that
        log.info("speed of %s not measured: %s", path.name, error)
        return None
    return round(timings[0] / timings[1], 3)


def validation_summary(format_report: Mapping[str, Any]) -> dict[str, Any]:
    """Per output, over all cases: lowest SQNR and cosine, largest max abs (for the artifact entry)."""
    outputs: dict[str, dict[str, float]] = {}
    for case in format_report.get("cases", []):
        for name, facts in case.get("outputs", {}).items():
            entry = outputs.setdefault(name, {})
            for key, pick in (("sqnr_db", min), ("cosine_similarity", min), ("max_abs", max)):
                if key in facts and isinstance(facts[key], (int, float)):
                    entry[key] = pick(entry[key], facts[key]) if key in entry else facts[key]
            # the family's task figure (bit, top-1 or probe agreement): its lowest over the cases
            for key, value in (facts.get("check") or {}).items():
                if key.endswith("agreement") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    entry[key] = min(entry[key], value) if key in entry else value
    cases = [c["name"] for c in format_report.get("cases", []) if "skipped" not in c]
    return {"passed": bool(format_report.get("passed")), "cases": cases, "outputs": outputs}
