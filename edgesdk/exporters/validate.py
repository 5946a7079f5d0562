"""Prove that every artifact computes what the PyTorch module computes.

Full mode: the reference module and each artifact run on the same inputs (seeded random at
the example shapes, plus any sample inputs). Stream mode: both run ``validation_steps``
consecutive steps, each carrying *its own* state, so drift accumulates as it would on a
device; and where the recipe gives an independent ``stream_reference`` (e.g. the
full-sequence model), both are also compared with it. Shapes are compared before values; every
failure is collected before anything is raised.

Float artifacts must meet the element-wise tolerance at every step. An int8 artifact is judged
by its signal-to-quantization-noise ratio over the whole case (all steps of a stream at once),
which must reach ``min_sqnr_db``; its max abs error is still reported. The rules, the
comparisons and the tick lines are ``edgesdk.runtime.compare``'s, the engine the on-device
self-test applies to the rules the manifest carries.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from edgesdk.runtime.backends.base import BACKEND_OF_FORMAT, open_backend
from edgesdk.runtime.compare import (MIN_SQNR_DB, CaseResult, OutputResult, OutputRule, Rules, Tolerance,
                                     compare_output, compare_steps, line_prefix, tick_line)
from edgesdk.runtime.precision import IoQuantization
from edgesdk.spec import ExportSpec, as_numpy, call_module

log = logging.getLogger(__name__)

RANDOM_SEED = 0


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


def rules_of(spec: ExportSpec, min_sqnr: float = MIN_SQNR_DB) -> Rules:
    """The spec's tolerances and family checks as the engine's rules (the manifest carries them)."""
    return Rules(Tolerance(spec.atol, spec.rtol), {k: Tolerance(*v) for k, v in spec.output_tolerances.items()},
                 dict(spec.output_checks), min_sqnr)


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
    rules = rules_of(spec, min_sqnr)
    full = spec.mode == "full"
    cases = _full_cases(spec) if full else _stream_cases(spec)
    references = [_reference_outputs(spec, feeds) for _, feeds in cases]
    gaps = _Float64Gaps(spec, cases, references)
    judge = validate_full_case if full else validate_stream_case
    report: dict[str, Any] = {"mode": spec.mode, "atol": spec.atol, "rtol": spec.rtol, "formats": {}}
    lines: list[str] = []
    for fmt, (path, facts) in artifacts.items():
        runner = ArtifactRunner(fmt, path, facts)
        results = []
        for index, ((case_name, feeds), reference) in enumerate(zip(cases, references)):
            if runner.real_data_only and index == 0:
                case = CaseResult(case_name, skipped="random inputs lie outside the calibrated ranges; "
                                                     "judged on the real validation data")
            else:
                case = gaps.attach(index, judge(spec, rules, runner, case_name, feeds, reference))
            lines += case_lines(fmt, case)
            results.append(case)
        report["formats"][fmt] = _format_report(runner, results)
    report["passed"] = all(f["passed"] for f in report["formats"].values())
    report["lines"] = lines
    return report, dict(cases[0][1]), _first_case_outputs(spec, references)


def validate_full_case(spec: ExportSpec, rules: Rules, runner: ArtifactRunner, case_name: str,
                       feeds: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> CaseResult:
    """One input through one artifact, every output judged against the module's."""
    if not runner.accepts(feeds):
        return CaseResult(case_name, skipped="input shapes differ from this artifact's static shapes")
    got, error = _guarded(lambda: runner.run(feeds, spec.output_names), runner.format)
    if error is not None:
        return CaseResult(case_name, error=error)
    return CaseResult(case_name, tuple(compare_output(n, reference[n], got[n], rules.rule(n, runner.quantized))
                                       for n in spec.output_names))


def validate_stream_case(spec: ExportSpec, rules: Rules, runner: ArtifactRunner, case_name: str,
                         sequence: Mapping[str, np.ndarray], reference: list[dict[str, np.ndarray]]) -> CaseResult:
    """One sequence stepped through one artifact carrying its own state, judged step by step
    against the module's steps and, where the recipe has one, against the independent reference."""
    if not runner.accepts({n: sequence[n][0] for n in spec.example_inputs}):
        return CaseResult(case_name, skipped="step shapes differ from this artifact's static shapes")
    got, error = _guarded(lambda: run_stream(spec, sequence, lambda f: runner.run(f, spec.all_output_names)),
                          runner.format)
    if error is not None:
        return CaseResult(case_name, error=error)
    outputs = tuple(compare_steps(n, [r[n] for r in reference], [g[n] for g in got], rules.rule(n, runner.quantized))
                    for n in spec.output_names)
    against = _against_stream_reference(spec, rules, sequence, reference, got, runner.quantized)
    return CaseResult(case_name, outputs, steps=len(got), against_reference=against)


def case_lines(fmt: str, case: CaseResult) -> list[str]:
    """The tick lines of one case: one per output, the float64 diagnostic, then vs the full model."""
    where = [(fmt, 6), (case.name, 22)]
    if case.error is not None:
        return [f"{line_prefix(False, where)} {case.error}"]
    lines = [tick_line(output, where) for output in case.outputs]
    if "pytorch_float64_gap" in case.diagnostics:
        lines += _gap_lines(where, _diagnosable(case), case.diagnostics["pytorch_float64_gap"])
    lines += [tick_line(output, where, output.name + " vs full model") for output in case.against_reference]
    return lines


def _reference_outputs(spec: ExportSpec, feeds: Mapping[str, np.ndarray]):
    if spec.mode == "full":
        return {k: v for k, v in call_module(spec, feeds).items() if k in spec.output_names}
    return run_stream(spec, feeds, lambda f: call_module(spec, f))


def _format_report(runner: ArtifactRunner, cases: list[CaseResult]) -> dict[str, Any]:
    ran = [c for c in cases if c.skipped is None]
    report = {"backend": runner.engine.name, "providers": runner.engine.providers,
              "cases": [c.to_dict() for c in cases], "passed": bool(ran) and all(c.passed for c in ran)}
    if not ran:
        report["error"] = "no validation case fits this artifact's shapes"
    return report


def _diagnosable(case: CaseResult) -> list[OutputResult]:
    """Failed float comparisons (not errors, not SQNR): where PyTorch's own rounding can tell
    an ill-conditioned model from a wrong export."""
    return [o for o in case.outputs if not o.passed and o.error is None and o.sqnr_db is None]


class _Float64Gaps:
    """float64_gaps per case, measured once (on the first failure) and shared by every format."""

    def __init__(self, spec: ExportSpec, cases, references):
        self.spec, self.cases, self.references = spec, cases, references
        self.measured: dict[int, dict[str, float] | None] = {}

    def attach(self, index: int, case: CaseResult) -> CaseResult:
        if not _diagnosable(case):
            return case
        if index not in self.measured:
            self.measured[index] = float64_gaps(self.spec, self.cases[index][1], self.references[index])
        return dataclasses.replace(case, diagnostics={"pytorch_float64_gap": self.measured[index]})


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


def _gap_lines(where: list[tuple[str, int]], failed: list[OutputResult], gaps: dict[str, float] | None) -> list[str]:
    prefix = "  " + " ".join(f"{text:{width}s}" for text, width in where)  # no mark: not a verdict
    if gaps is None:
        return [f"{prefix} (the module does not run in float64: no rounding reference)"]
    lines = []
    for output in failed:
        gap = gaps[output.name]
        ratio = f", artifact error {output.max_abs / gap:.1f}x that" if gap > 0 else ""
        lines.append(f"{prefix} {output.name:24s} PyTorch float32 vs float64 here: max abs {gap:.1e}{ratio}")
    return lines


def _guarded(run: Callable[[], Any], fmt: str) -> tuple[Any, str | None]:
    """Run an artifact; a backend that raises fails the case with its message, not the export."""
    try:
        return run(), None
    except Exception as error:  # backends raise their own unrelated types
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return None, f"{fmt} backend raised: {message}"


def _against_stream_reference(spec: ExportSpec, rules: Rules, sequence, reference_steps, artifact_steps,
                              quantized: bool) -> tuple[OutputResult, ...]:
    """The artifact against the independent full-sequence reference (no family check: that
    reference is a different computation), with the PyTorch step's own error beside it."""
    if spec.stream_reference is None:
        return ()
    results = []
    for name, target in spec.stream_reference(sequence).items():
        rule = rules.rule(name, quantized)
        plain = dataclasses.replace(rule, check=None)
        artifact = compare_steps(name, list(target), [step[name] for step in artifact_steps], plain)
        torch_step = compare_steps(name, list(target), [step[name] for step in reference_steps],
                                   OutputRule(rule.tolerance))
        notes = {"pytorch_step_max_abs": torch_step.max_abs if torch_step.error is None else None}
        results.append(dataclasses.replace(artifact, notes=notes))
    return tuple(results)


def _first_case_outputs(spec: ExportSpec, references) -> dict[str, np.ndarray]:
    """The reference outputs of the first case (stacked by step for a stream)."""
    first = references[0]
    if spec.mode == "full":
        return dict(first)
    return {name: np.stack([step[name] for step in first]) for name in spec.output_names}
