"""Prove that every artifact computes what the PyTorch module computes.

Full mode: the reference module and each artifact run on the same inputs (seeded random at
the example shapes, plus any sample inputs). Stream mode: both run ``validation_steps``
consecutive steps, each carrying *its own* state, so drift accumulates as it would on a
device; and where the recipe gives an independent ``stream_reference`` (e.g. the
full-sequence model), both are also compared with it. Shapes are compared before values; every
failure is collected before anything is raised.

Float artifacts must meet the element-wise tolerance at every step. An int8 artifact is judged
by its signal-to-quantization-noise ratio over the whole case (all steps of a stream at once),
which must reach ``min_sqnr_db``; its max abs error is still reported.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from edgesdk.runtime.backends.base import BACKEND_OF_FORMAT, open_backend
from edgesdk.runtime.compare import MIN_SQNR_DB, cosine_similarity, elementwise_error, sqnr_db
from edgesdk.runtime.precision import IoQuantization
from edgesdk.spec import ExportSpec, as_numpy, call_module

log = logging.getLogger(__name__)

RANDOM_SEED = 0


@dataclass
class Comparison:
    """How one output of one case compares (over all steps, for streaming)."""

    name: str
    passed: bool
    max_abs: float = float("nan")
    mean_abs: float = float("nan")
    atol: float = 0.0
    rtol: float = 0.0
    error: str | None = None
    worst_step: int | None = None
    per_step_max_abs: list[float] | None = None
    check: dict[str, Any] | None = None
    sqnr_db: float | None = None
    min_sqnr_db: float | None = None
    cosine: float | None = None

    def as_dict(self) -> dict[str, Any]:
        facts = {k: v for k, v in self.__dict__.items() if v is not None and k != "name"}
        if self.sqnr_db is not None:
            facts.pop("atol", None)
            facts.pop("rtol", None)
        for key in ("max_abs", "mean_abs"):
            if key in facts and not np.isfinite(facts[key]):
                facts.pop(key)
        return facts

    def line(self, fmt: str, case: str) -> str:
        mark = "✓" if self.passed else "✗"
        if self.error:
            return f"{mark} {fmt:6s} {case:22s} {self.name:24s} {self.error}"
        if self.sqnr_db is not None:
            text = (f"{mark} {fmt:6s} {case:22s} {self.name:24s} SQNR {self.sqnr_db:.1f} dB, "
                    f"needs {self.min_sqnr_db:.0f}  (max abs {self.max_abs:.1e}"
                    + (f", cosine {self.cosine:.5f})" if self.cosine is not None else ")"))
        else:
            text = f"{mark} {fmt:6s} {case:22s} {self.name:24s} max abs {self.max_abs:.1e}  atol {self.atol:.0e}"
        if self.rtol and self.sqnr_db is None:
            text += f" + rtol {self.rtol:.0e}·|ref|"
        if self.worst_step is not None:
            text += f"  (worst step {self.worst_step})"
        if self.check:
            extras = ", ".join(f"{k} {_short(v)}" for k, v in self.check.items() if k != "passed")
            text += f"  [{extras}]"
        return text


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def compare_arrays(name: str, reference: np.ndarray, candidate: np.ndarray, atol: float, rtol: float) -> Comparison:
    if reference.shape != candidate.shape:
        return Comparison(name, False, atol=atol, rtol=rtol, error=f"shape {candidate.shape} vs reference {reference.shape}")
    if reference.size == 0:
        return Comparison(name, True, 0.0, 0.0, atol, rtol)
    if not np.isfinite(candidate).all() and np.isfinite(reference).all():
        return Comparison(name, False, atol=atol, rtol=rtol, error="non-finite values where the reference is finite")
    difference, within = elementwise_error(reference, candidate, atol, rtol)
    return Comparison(name, bool(within.all()), float(difference.max()), float(difference.mean()), atol, rtol)


def compare_quantized(name: str, reference: np.ndarray, candidate: np.ndarray, min_sqnr: float) -> Comparison:
    """An int8 artifact's output against the float reference: SQNR over the whole array."""
    if reference.shape != candidate.shape:
        return Comparison(name, False, error=f"shape {candidate.shape} vs reference {reference.shape}")
    if not np.isfinite(candidate).all() and np.isfinite(reference).all():
        return Comparison(name, False, error="non-finite values where the reference is finite")
    difference = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
    ratio = sqnr_db(reference, candidate)
    return Comparison(name, bool(ratio >= min_sqnr), float(difference.max(initial=0.0)),
                      float(difference.mean()) if difference.size else 0.0, sqnr_db=ratio, min_sqnr_db=min_sqnr,
                      cosine=cosine_similarity(reference, candidate))


class ArtifactRunner:
    """Runs one artifact with logical names (the artifact facts map them)."""

    def __init__(self, fmt: str, path: Path, facts: Mapping[str, Any]):
        self.format = fmt
        self.quantized = facts.get("precision", "float32") != "float32"
        # ``fmt`` may be a label such as "tflite/int8-static"; the facts name the format.
        self.engine = open_backend(BACKEND_OF_FORMAT[facts.get("format", fmt)], path)
        self.io_quantization = IoQuantization.from_manifest(facts.get("io_quantization"))
        # Static int8 scales are fitted to real data: random inputs lie outside them by design.
        self.real_data_only = facts.get("precision") == "int8-static"
        self.input_map = facts["inputs"]
        self.output_map = facts["outputs"]
        self.static_shapes = facts.get("static_shapes")

    def accepts(self, feeds: Mapping[str, np.ndarray]) -> bool:
        """False where a static-shape artifact cannot take these shapes."""
        if not self.static_shapes:
            return True
        return all(list(feeds[n].shape) == list(s) for n, s in self.static_shapes.items() if n in feeds)

    def run(self, feeds: Mapping[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        if self.io_quantization is not None:
            feeds = self.io_quantization.quantize_feeds(feeds)
        backend_feeds = {self.input_map[n]: np.ascontiguousarray(v) for n, v in feeds.items()}
        results = self.engine.run(backend_feeds, [self.output_map[n] for n in output_names])
        if self.io_quantization is not None:
            return self.io_quantization.dequantize_results(dict(zip(output_names, results)))
        return dict(zip(output_names, results))


def random_feeds(spec: ExportSpec, seed: int) -> dict[str, np.ndarray]:
    """Seeded inputs at the example shapes (the recipe may override how they are drawn)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, example in spec.example_inputs.items():
        shape = tuple(example.shape)
        if spec.random_input is not None:
            feeds[name] = np.asarray(spec.random_input(name, shape, rng))
        else:
            dtype = as_numpy(example).dtype
            feeds[name] = rng.standard_normal(shape).astype(dtype) if dtype.kind == "f" else as_numpy(example).copy()
    return feeds


def random_sequence(spec: ExportSpec, seed: int) -> dict[str, np.ndarray]:
    steps = [random_feeds(spec, seed + step) for step in range(spec.validation_steps)]
    return {name: np.stack([step[name] for step in steps]) for name in spec.example_inputs}


def _compare_output(spec: ExportSpec, name: str, reference: np.ndarray, candidate: np.ndarray) -> Comparison:
    atol, rtol = spec.tolerance(name)
    comparison = compare_arrays(name, reference, candidate, atol, rtol)
    check = spec.output_checks.get(name)
    if check is not None and comparison.error is None:
        facts = dict(check(reference, candidate))
        comparison.check = facts
        comparison.passed = bool(facts["passed"])
    return comparison


def _merge_steps(name: str, per_step: list[Comparison]) -> Comparison:
    """One comparison over all steps: worst step, mean of means, all checks merged."""
    errors = [c for c in per_step if c.error]
    if errors:
        first = errors[0]
        return Comparison(name, False, atol=first.atol, rtol=first.rtol, error=f"step {per_step.index(first)}: {first.error}")
    maxima = [c.max_abs for c in per_step]
    worst = int(np.argmax(maxima))
    merged = Comparison(
        name,
        all(c.passed for c in per_step),
        float(maxima[worst]),
        float(np.mean([c.mean_abs for c in per_step])),
        per_step[0].atol,
        per_step[0].rtol,
        worst_step=worst,
        per_step_max_abs=[float(m) for m in maxima],
    )
    checks = [c.check for c in per_step if c.check]
    if checks:
        merged.check = {"passed": all(c["passed"] for c in checks), "failed_steps": [i for i, c in enumerate(per_step) if c.check and not c.check["passed"]]}
        for key, value in checks[0].items():
            if key != "passed" and isinstance(value, (int, float)):
                values = [c[key] for c in checks]
                merged.check[key] = float(np.min(values)) if "agree" in key else float(np.max(values))
    return merged


def _full_cases(spec: ExportSpec) -> list[tuple[str, dict[str, np.ndarray]]]:
    cases = [(f"random[seed={RANDOM_SEED}]", random_feeds(spec, RANDOM_SEED))]
    cases += [(f"sample[{i}]", {k: np.asarray(v) for k, v in feeds.items()}) for i, feeds in enumerate(spec.sample_inputs)]
    return cases


def _stream_cases(spec: ExportSpec) -> list[tuple[str, dict[str, np.ndarray]]]:
    cases = [(f"random[seed={RANDOM_SEED}]", random_sequence(spec, RANDOM_SEED))]
    cases += [(f"sample[{i}]", {k: np.asarray(v) for k, v in seq.items()}) for i, seq in enumerate(spec.sample_inputs)]
    return cases


def run_stream(spec: ExportSpec, sequence: Mapping[str, np.ndarray], run: Callable[[dict], dict]) -> list[dict[str, np.ndarray]]:
    """Step through ``sequence`` with ``run`` (reference or artifact), carrying its own state."""
    steps = len(next(iter(sequence.values())))
    state = {s.input_name: s.initial(s.shape[s.batch_axis]) for s in spec.states}
    outputs = []
    for step in range(steps):
        feeds = {name: sequence[name][step] for name in spec.example_inputs}
        feeds.update(state)
        result = run(feeds)
        state = {s.input_name: result[s.output_name] for s in spec.states}
        outputs.append({name: result[name] for name in spec.output_names})
    return outputs


def validate(
    spec: ExportSpec, artifacts: Mapping[str, tuple[Path, Mapping[str, Any]]], min_sqnr: float = MIN_SQNR_DB
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Compare every artifact with the reference module.

    Args:
        artifacts: format -> (path, the artifact's manifest facts).
        min_sqnr: the SQNR in dB an int8 artifact must reach on every output and case.
    Returns:
        (report for validation.json, the first case's inputs, its reference outputs): the
        case is what ``samples/`` keeps for on-device re-validation.
    """
    report: dict[str, Any] = {"mode": spec.mode, "atol": spec.atol, "rtol": spec.rtol, "formats": {}}
    cases = _full_cases(spec) if spec.mode == "full" else _stream_cases(spec)
    references = []
    for _, feeds in cases:
        if spec.mode == "full":
            references.append({k: v for k, v in call_module(spec, feeds).items() if k in spec.output_names})
        else:
            references.append(run_stream(spec, feeds, lambda f: call_module(spec, f)))

    lines = []
    gaps: dict[int, dict[str, float] | None] = {}
    for fmt, (path, facts) in artifacts.items():
        runner = ArtifactRunner(fmt, path, facts)
        format_report: dict[str, Any] = {"backend": runner.engine.name, "providers": runner.engine.providers, "cases": []}
        for index, ((case_name, feeds), reference) in enumerate(zip(cases, references)):
            case: dict[str, Any] = {"name": case_name, "outputs": {}}
            if runner.real_data_only and index == 0:
                case["skipped"] = "random inputs lie outside the calibrated ranges; judged on the real validation data"
                format_report["cases"].append(case)
                continue
            if spec.mode == "full":
                if not runner.accepts(feeds):
                    case["skipped"] = "input shapes differ from this artifact's static shapes"
                    format_report["cases"].append(case)
                    continue
                got = _guarded(lambda: runner.run(feeds, spec.output_names), fmt, case, lines, case_name)
                if got is None:
                    format_report["cases"].append(case)
                    continue
                if runner.quantized:
                    comparisons = [_compare_quantized(spec, n, reference[n], got[n], min_sqnr) for n in spec.output_names]
                else:
                    comparisons = [_compare_output(spec, n, reference[n], got[n]) for n in spec.output_names]
            else:
                first_step = {n: feeds[n][0] for n in spec.example_inputs}
                if not runner.accepts(first_step):
                    case["skipped"] = "step shapes differ from this artifact's static shapes"
                    format_report["cases"].append(case)
                    continue
                got_steps = _guarded(lambda: run_stream(spec, feeds, lambda f: runner.run(f, spec.all_output_names)),
                                     fmt, case, lines, case_name)
                if got_steps is None:
                    format_report["cases"].append(case)
                    continue
                case["steps"] = len(got_steps)
                if runner.quantized:
                    comparisons = [_quantized_steps(spec, n, reference, got_steps, min_sqnr) for n in spec.output_names]
                else:
                    comparisons = [
                        _merge_steps(n, [_compare_output(spec, n, r[n], g[n]) for r, g in zip(reference, got_steps)])
                        for n in spec.output_names
                    ]
                if spec.stream_reference is not None:
                    case["vs_stream_reference"] = _against_stream_reference(
                        spec, feeds, reference, got_steps, min_sqnr if runner.quantized else None)
            case["outputs"] = {c.name: c.as_dict() for c in comparisons}
            case["passed"] = all(c.passed for c in comparisons) and case.get("vs_stream_reference", {}).get("passed", True)
            lines += [c.line(fmt, case_name) for c in comparisons]
            failed = [c for c in comparisons if not c.passed and c.error is None and c.sqnr_db is None]
            if failed:
                if index not in gaps:
                    gaps[index] = float64_gaps(spec, feeds, reference)
                case["pytorch_float64_gap"] = gaps[index]
                lines += _gap_lines(fmt, case_name, failed, gaps[index])
            if "vs_stream_reference" in case:
                for name, facts in case["vs_stream_reference"]["outputs"].items():
                    mark = "✓" if facts["passed"] else "✗"
                    if "sqnr_db" in facts:
                        measure = f"SQNR {facts['sqnr_db']:.1f} dB, needs {facts['min_sqnr_db']:.0f}  (max abs {facts['max_abs']:.1e})"
                    else:
                        measure = f"max abs {facts['max_abs']:.1e}  atol {facts['atol']:.0e}"
                    lines.append(f"{mark} {fmt:6s} {case_name:22s} {name + ' vs full model':24s} {measure}")
            format_report["cases"].append(case)
        ran = [c for c in format_report["cases"] if "skipped" not in c]
        format_report["passed"] = bool(ran) and all(c["passed"] for c in ran)
        if not ran:
            format_report["error"] = "no validation case fits this artifact's shapes"
        report["formats"][fmt] = format_report
    report["passed"] = all(f["passed"] for f in report["formats"].values())
    report["lines"] = lines
    return report, dict(cases[0][1]), _first_case_outputs(spec, references)


def float64_gaps(spec: ExportSpec, feeds: Mapping[str, np.ndarray], reference) -> dict[str, float] | None:
    """PyTorch's own float32 rounding on one case: max |float32 - float64| per output.

    Shown when a float artifact fails, so that an ill-conditioned model (where PyTorch itself
    moves that much) can be told from an export that computes something else. None when the
    module cannot run in float64.
    """
    def widen(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in feeds.items()}

    previous = torch.get_default_dtype()
    try:
        spec64 = dataclasses.replace(spec, module=copy.deepcopy(spec.module).double())
        torch.set_default_dtype(torch.float64)  # tensors the module creates inside, too
        if spec.mode == "full":
            steps64, steps32 = [call_module(spec64, widen(feeds))], [reference]
        else:
            steps64 = run_stream(spec64, widen(feeds), lambda f: call_module(spec64, widen(f)))
            steps32 = reference
        return {name: float(max(np.abs(a[name] - b[name].astype(np.float64)).max() for a, b in zip(steps64, steps32)))
                for name in spec.output_names}
    except Exception as error:  # any op without a float64 kernel, any dtype clash inside
        log.debug("float64 reference failed: %s", error)
        return None
    finally:
        torch.set_default_dtype(previous)


def _gap_lines(fmt: str, case_name: str, failed: list[Comparison], gaps: dict[str, float] | None) -> list[str]:
    if gaps is None:
        return [f"  {fmt:6s} {case_name:22s} (the module does not run in float64: no rounding reference)"]
    lines = []
    for comparison in failed:
        gap = gaps[comparison.name]
        ratio = f", artifact error {comparison.max_abs / gap:.1f}x that" if gap > 0 else ""
        lines.append(f"  {fmt:6s} {case_name:22s} {comparison.name:24s} PyTorch float32 vs float64 here: "
                     f"max abs {gap:.1e}{ratio}")
    return lines


def _guarded(run: Callable[[], Any], fmt: str, case: dict[str, Any], lines: list[str], case_name: str) -> Any:
    """Run an artifact; a backend that raises fails the case with its message, not the export."""
    try:
        return run()
    except Exception as error:  # backends raise their own unrelated types
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        case["passed"] = False
        case["error"] = f"{fmt} backend raised: {message}"
        lines.append(f"✗ {fmt:6s} {case_name:22s} {case['error']}")
        return None


def _compare_quantized(spec: ExportSpec, name: str, reference: np.ndarray, candidate: np.ndarray, min_sqnr: float) -> Comparison:
    comparison = compare_quantized(name, reference, candidate, min_sqnr)
    check = spec.output_checks.get(name)
    if check is not None and comparison.error is None:
        facts = dict(check(reference, candidate))
        comparison.check = facts
        comparison.passed = comparison.passed and bool(facts["passed"])
    return comparison


def _quantized_steps(spec: ExportSpec, name: str, reference_steps, artifact_steps, min_sqnr: float) -> Comparison:
    """SQNR over all steps at once (early steps may be all zeros), plus the per-step max abs."""
    reference = np.stack([step[name] for step in reference_steps])
    candidate = np.stack([step[name] for step in artifact_steps])
    comparison = _compare_quantized(spec, name, reference, candidate, min_sqnr)
    if comparison.error is None:
        maxima = np.abs(candidate.astype(np.float64) - reference).reshape(len(reference), -1).max(axis=1)
        comparison.per_step_max_abs = [float(m) for m in maxima]
        comparison.worst_step = int(np.argmax(maxima))
    return comparison


def _against_stream_reference(spec, sequence, reference_steps, artifact_steps, min_sqnr: float | None) -> dict[str, Any]:
    """Both the PyTorch step and the artifact against the independent full-sequence reference.

    ``min_sqnr`` is set for an int8 artifact, which is then judged by SQNR over all steps.
    """
    expected = spec.stream_reference(sequence)
    result: dict[str, Any] = {"outputs": {}}
    for name, target in expected.items():
        atol, rtol = spec.tolerance(name)
        if min_sqnr is not None:
            merged = compare_quantized(name, target, np.stack([step[name] for step in artifact_steps]), min_sqnr)
        else:
            per_step = [compare_arrays(name, target[i], step[name], atol, rtol) for i, step in enumerate(artifact_steps)]
            merged = _merge_steps(name, per_step)
        torch_steps = [compare_arrays(name, target[i], step[name], atol, rtol) for i, step in enumerate(reference_steps)]
        facts = merged.as_dict()
        facts["pytorch_step_max_abs"] = float(max(c.max_abs for c in torch_steps)) if all(c.error is None for c in torch_steps) else None
        result["outputs"][name] = facts
    result["passed"] = all(f["passed"] for f in result["outputs"].values())
    return result


def _first_case_outputs(spec: ExportSpec, references) -> dict[str, np.ndarray]:
    """The reference outputs of the first case (stacked by step for a stream)."""
    first = references[0]
    if spec.mode == "full":
        return dict(first)
    return {name: np.stack([step[name] for step in first]) for name in spec.output_names}
