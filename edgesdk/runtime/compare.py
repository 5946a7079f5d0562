"""The one comparison engine of edgesdk: export validation, the on-device self-test and the demo.

A rule says how one output is judged; ``compare_output`` (one array) and ``compare_steps`` (a
stream, step by step) apply it and return an ``OutputResult``; ``tick_line`` renders one.

- Float artifacts must match element by element: ``|candidate - reference| <= atol +
  rtol·|reference|`` everywhere (``Tolerance``).
- A reduced-precision (int8) artifact cannot, by design; it is judged by its
  signal-to-quantization-noise ratio over a whole case (``SqnrRule``), the measure quantization
  tools report. Cosine similarity is reported beside it.
- A family check (data, carried in the manifest so the device applies the rule export applied)
  replaces the element-wise verdict of one output: ``BitAgreement`` for binary hash codes, where a
  sign flip near zero is expected; ``TopOneAgreement`` for logits that must also pick the same
  class. A reduced-precision artifact must pass both its SQNR (in place of the element-wise
  tolerance) and the family check, except for binary codes: the SQNR of +-1 codes only restates
  the flip count (99.9 % agreement is 24 dB), so their bit agreement alone judges them.

Shapes are compared first, then finiteness, then values. Never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any, ClassVar, Mapping, Sequence, Union

import numpy as np


def elementwise_error(reference: np.ndarray, candidate: np.ndarray, atol: float, rtol: float) -> tuple[np.ndarray, np.ndarray]:
    """|candidate - reference| in float64, and where it is within ``atol + rtol * |reference|``."""
    reference = reference.astype(np.float64)
    difference = np.abs(candidate.astype(np.float64) - reference)
    return difference, difference <= atol + rtol * np.abs(reference)


# Default floor for int8 artifacts. Dynamic-range int8 of LMUFormer scv2 measures 38 dB on frame
# logits and 42 dB on running-mean logits; a wrong scale or a quantized recurrence falls far below.
MIN_SQNR_DB = 30.0


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """10·log10(Σ reference² / Σ (candidate - reference)²), in float64; inf when they are equal."""
    reference = reference.astype(np.float64)
    noise = float(np.sum((candidate.astype(np.float64) - reference) ** 2))
    signal = float(np.sum(reference ** 2))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))


def cosine_similarity(reference: np.ndarray, candidate: np.ndarray) -> float:
    """<reference, candidate> / (|reference|·|candidate|) over all elements, in float64.

    1.0 when both are all zeros, 0.0 when only one is.
    """
    a = reference.astype(np.float64).ravel()
    b = candidate.astype(np.float64).ravel()
    norms = float(np.linalg.norm(a)) * float(np.linalg.norm(b))
    if norms == 0.0:
        return 1.0 if not a.any() and not b.any() else 0.0
    return float(np.dot(a, b) / norms)


# ---------------------------------------------------------------------------------------------
# Rules (data: they travel in the manifest)


@dataclass(frozen=True)
class Tolerance:
    """Element-wise rule: ``|candidate - reference| <= atol + rtol·|reference|``."""

    atol: float = 1e-4
    rtol: float = 1e-4

    def __post_init__(self) -> None:
        if not (self.atol >= 0 and self.rtol >= 0):
            raise ValueError(f"atol and rtol must be >= 0, not {self.atol}, {self.rtol}")


@dataclass(frozen=True)
class SqnrRule:
    """Reduced-precision rule: SQNR over the whole case of at least ``min_db`` decibels."""

    min_db: float = MIN_SQNR_DB


@dataclass(frozen=True)
class BitAgreement:
    """Family check for binary codes: the share of code bits that agree must reach ``min_agreement``.

    ``codes`` says how bits are derived from the output; "sign" (the only one so far) reads
    each element's sign, so a value that crosses zero is one flipped bit.
    """

    min_agreement: float = 0.999
    codes: str = "sign"
    kind: ClassVar[str] = "bit_agreement"
    replaces_sqnr: ClassVar[bool] = True  # see the module docstring

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(f"min_agreement must be within [0, 1], not {self.min_agreement}")
        if self.codes != "sign":
            raise ValueError(f"codes must be 'sign', not {self.codes!r}")

    def evaluate(self, reference: np.ndarray, candidate: np.ndarray, within: np.ndarray) -> dict[str, Any]:
        """Facts: passed, bit_agreement, flipped_bits, total_bits, flipped_bits_per_image, required."""
        flipped = np.sign(reference) != np.sign(candidate)
        total, flips = int(flipped.size), int(flipped.sum())
        agreement = 1.0 - flips / total if total else 1.0
        per_image = flipped.reshape(flipped.shape[0], -1).sum(axis=1).tolist() if flipped.ndim and flipped.size else [flips]
        return {"passed": bool(agreement >= self.min_agreement), "bit_agreement": agreement, "flipped_bits": flips,
                "total_bits": total, "flipped_bits_per_image": per_image, "required": self.min_agreement}


@dataclass(frozen=True)
class TopOneAgreement:
    """Family check for logits: the element-wise tolerance holds AND the arg-max along ``axis``
    agrees on at least ``min_agreement`` of the rows (default: every row)."""

    min_agreement: float = 1.0
    axis: int = -1
    kind: ClassVar[str] = "top1_agreement"
    replaces_sqnr: ClassVar[bool] = False

    def evaluate(self, reference: np.ndarray, candidate: np.ndarray, within: np.ndarray) -> dict[str, Any]:
        """Facts: passed, top1_agreement, required."""
        same = reference.argmax(self.axis) == candidate.argmax(self.axis) if reference.size else np.ones(1, bool)
        agreement = float(np.mean(same))
        return {"passed": bool(agreement >= self.min_agreement and within.all()), "top1_agreement": agreement,
                "required": self.min_agreement}


@dataclass(frozen=True)
class ShareWithinTolerance:
    """The share of elements within the tolerance must reach ``min_share``.

    Only for bundles exported before family checks were written into the manifest: they list
    ``family_checked_outputs`` by name, without the rule, and the self-test judged those by this.
    """

    min_share: float = 0.999
    kind: ClassVar[str] = "share_within_tolerance"
    replaces_sqnr: ClassVar[bool] = False

    def evaluate(self, reference: np.ndarray, candidate: np.ndarray, within: np.ndarray) -> dict[str, Any]:
        """Facts: passed, agreement (the share within tolerance), required."""
        share = float(within.mean()) if within.size else 1.0
        return {"passed": bool(share >= self.min_share), "agreement": share, "required": self.min_share}


@dataclass(frozen=True)
class ProbeAgreement:
    """Family check for feature outputs (e.g. hidden states [..., features]): a linear probe
    ``argmax(x @ weights + bias)`` fitted on the float32 model's features of real data must give
    the same prediction on at least ``min_agreement`` of the feature vectors, and the element-wise
    tolerance must hold (under an SQNR rule, the SQNR instead). ``weights``: [features][classes]."""

    weights: tuple[tuple[float, ...], ...]
    bias: tuple[float, ...]
    min_agreement: float = 0.95
    about: str = ""  # what the probe predicts and what it was fitted on, for the reader
    kind: ClassVar[str] = "probe_agreement"
    replaces_sqnr: ClassVar[bool] = False

    def __post_init__(self) -> None:
        weights = tuple(tuple(float(v) for v in row) for row in self.weights)
        bias = tuple(float(v) for v in self.bias)
        if not weights or len({len(row) for row in weights}) != 1 or len(weights[0]) != len(bias) or len(bias) < 2:
            raise ValueError("weights must be [features][classes] with classes >= 2, and bias [classes]")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(f"min_agreement must be within [0, 1], not {self.min_agreement}")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "bias", bias)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The probe's class of every feature vector (the last axis), flattened."""
        weights = np.asarray(self.weights, np.float64)
        if features.shape[-1] != weights.shape[0]:
            raise ValueError(f"the probe takes {weights.shape[0]} features, the output has {features.shape[-1]}")
        return (features.reshape(-1, weights.shape[0]).astype(np.float64) @ weights + np.asarray(self.bias)).argmax(1)

    def evaluate(self, reference: np.ndarray, candidate: np.ndarray, within: np.ndarray) -> dict[str, Any]:
        """Facts: passed, probe_agreement, vectors, classes_seen (by the reference), required."""
        want, got = self.predict(reference), self.predict(candidate)
        agreement = float(np.mean(want == got)) if want.size else 1.0
        return {"passed": bool(agreement >= self.min_agreement and within.all()), "probe_agreement": agreement,
                "vectors": int(want.size), "classes_seen": int(np.unique(want).size), "required": self.min_agreement}


FamilyCheck = Union[BitAgreement, TopOneAgreement, ShareWithinTolerance, ProbeAgreement]
FAMILY_CHECKS: dict[str, type] = {c.kind: c for c in (BitAgreement, TopOneAgreement, ShareWithinTolerance,
                                                      ProbeAgreement)}


def family_check_to_manifest(check: FamilyCheck) -> dict[str, Any]:
    """``{"kind": ..., <fields>}`` for the manifest's ``validation.output_checks``."""
    return {"kind": check.kind, **{f.name: getattr(check, f.name) for f in dataclass_fields(check)}}


def family_check_from_manifest(data: Any) -> FamilyCheck:
    """The check a manifest entry describes; ValueError with a reason when it is not one."""
    if not isinstance(data, Mapping) or not isinstance(data.get("kind"), str):
        raise ValueError("must be an object with a 'kind'")
    kind = FAMILY_CHECKS.get(data["kind"])
    if kind is None:
        raise ValueError(f"kind {data['kind']!r} is not one of {', '.join(FAMILY_CHECKS)}")
    fields = {k: v for k, v in data.items() if k != "kind"}
    unknown = sorted(set(fields) - {f.name for f in dataclass_fields(kind)})
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)} for kind {data['kind']!r}")
    try:
        return kind(**fields)
    except (TypeError, ValueError) as error:
        raise ValueError(str(error)) from None


@dataclass(frozen=True)
class OutputRule:
    """How one output is judged: the tolerance, SQNR where the artifact has reduced precision,
    and the family check (which replaces the element-wise verdict) where the family has one."""

    tolerance: Tolerance = Tolerance()
    sqnr: SqnrRule | None = None
    check: FamilyCheck | None = None


@dataclass(frozen=True)
class Rules:
    """The rules of every output of one export, as the manifest's ``validation`` section carries them."""

    tolerance: Tolerance = Tolerance()
    output_tolerances: Mapping[str, Tolerance] = field(default_factory=dict)
    checks: Mapping[str, FamilyCheck] = field(default_factory=dict)
    min_sqnr_db: float = MIN_SQNR_DB

    def rule(self, name: str, reduced_precision: bool = False) -> OutputRule:
        return OutputRule(self.output_tolerances.get(name, self.tolerance),
                          SqnrRule(self.min_sqnr_db) if reduced_precision else None, self.checks.get(name))

    def to_manifest(self) -> dict[str, Any]:
        """The rule fields of the manifest's ``validation`` section (``family_checked_outputs`` is
        kept for readers older than ``output_checks``)."""
        return {"atol": self.tolerance.atol, "rtol": self.tolerance.rtol,
                "output_tolerances": {k: [t.atol, t.rtol] for k, t in self.output_tolerances.items()},
                "family_checked_outputs": sorted(self.checks),
                "output_checks": {k: family_check_to_manifest(c) for k, c in sorted(self.checks.items())}}

    @classmethod
    def from_manifest(cls, section: Mapping[str, Any]) -> Rules:
        """Rules from a (checked) manifest ``validation`` section, old bundles included."""
        if "output_checks" in section:
            checks = {k: family_check_from_manifest(v) for k, v in section["output_checks"].items()}
        else:
            # A bundle exported before the family checks were written into the manifest names the
            # family-checked outputs but not their rule: judge them as the self-test always did
            # for those bundles, by the share of elements within tolerance.
            checks = {k: ShareWithinTolerance() for k in section.get("family_checked_outputs", [])}
        return cls(Tolerance(float(section.get("atol", 1e-4)), float(section.get("rtol", 1e-4))),
                   {k: Tolerance(*map(float, v)) for k, v in section.get("output_tolerances", {}).items()},
                   checks, float(section.get("min_sqnr_db") or MIN_SQNR_DB))


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class OutputResult:
    """How one output of one case compares (over all steps, for a stream)."""

    name: str
    passed: bool
    max_abs: float = float("nan")
    mean_abs: float = float("nan")
    atol: float = 0.0
    rtol: float = 0.0
    error: str | None = None
    worst_step: int | None = None
    per_step_max_abs: tuple[float, ...] | None = None
    check: Mapping[str, Any] | None = None
    sqnr_db: float | None = None
    min_sqnr_db: float | None = None
    cosine_similarity: float | None = None
    notes: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, name: str, facts: Mapping[str, Any]) -> OutputResult:
        """Read back what ``to_dict`` wrote (validation.json, a self-test report); other keys
        become ``notes``."""
        fields = {k: facts[k] for k in cls.__dataclass_fields__ if k in facts and k not in ("name", "notes")}
        if fields.get("per_step_max_abs") is not None:
            fields["per_step_max_abs"] = tuple(fields["per_step_max_abs"])
        notes = {k: v for k, v in facts.items() if k not in cls.__dataclass_fields__}
        return cls(name=name, **fields, notes=notes)

    def to_dict(self) -> dict[str, Any]:
        """The facts validation.json and the self-test report hold (absent ones left out)."""
        facts = {k: getattr(self, k) for k in self.__dataclass_fields__
                 if k not in ("name", "notes") and getattr(self, k) is not None}
        if self.sqnr_db is not None:  # judged by SQNR: the tolerance did not apply
            facts.pop("atol", None)
            facts.pop("rtol", None)
        for key in ("max_abs", "mean_abs"):
            if key in facts and not np.isfinite(facts[key]):
                facts.pop(key)
        if self.per_step_max_abs is not None:
            facts["per_step_max_abs"] = list(self.per_step_max_abs)
        if self.check is not None:
            facts["check"] = dict(self.check)
        return {**facts, **self.notes}


@dataclass(frozen=True)
class CaseResult:
    """Every output of one case (one input, or one sequence of steps) on one artifact."""

    name: str
    outputs: tuple[OutputResult, ...] = ()
    steps: int | None = None
    skipped: str | None = None
    error: str | None = None
    against_reference: tuple[OutputResult, ...] = ()
    diagnostics: Mapping[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return (self.error is None and self.skipped is None
                and all(o.passed for o in self.outputs + self.against_reference))

    def to_dict(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"name": self.name, "outputs": {o.name: o.to_dict() for o in self.outputs}}
        if self.skipped is not None:
            facts["skipped"] = self.skipped
            return facts
        facts["passed"] = self.passed
        for key in ("steps", "error"):
            if getattr(self, key) is not None:
                facts[key] = getattr(self, key)
        if self.against_reference:
            facts["vs_stream_reference"] = {"outputs": {o.name: o.to_dict() for o in self.against_reference},
                                            "passed": all(o.passed for o in self.against_reference)}
        return {**facts, **self.diagnostics}


# ---------------------------------------------------------------------------------------------
# Comparing


def _shape_and_finite(reference: np.ndarray, candidate: np.ndarray) -> str | None:
    if reference.shape != candidate.shape:
        return f"shape {candidate.shape} vs reference {reference.shape}"
    if np.isfinite(reference).all() and not np.isfinite(candidate).all():
        return "non-finite values where the reference is finite"
    return None


def compare_output(name: str, reference: np.ndarray, candidate: np.ndarray, rule: OutputRule) -> OutputResult:
    """Judge one output under ``rule``: shape first, then finiteness, then values."""
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    tolerance = rule.tolerance
    error = _shape_and_finite(reference, candidate)
    if error is not None:
        return OutputResult(name, False, atol=tolerance.atol, rtol=tolerance.rtol, error=error)
    difference, within = elementwise_error(reference, candidate, tolerance.atol, tolerance.rtol)
    max_abs = float(difference.max()) if difference.size else 0.0
    mean_abs = float(difference.mean()) if difference.size else 0.0
    facts: dict[str, Any] = {}
    if rule.sqnr is not None:
        ratio = sqnr_db(reference, candidate)
        passed = ratio >= rule.sqnr.min_db
        facts = {"sqnr_db": ratio, "min_sqnr_db": rule.sqnr.min_db,
                 "cosine_similarity": cosine_similarity(reference, candidate)}
    else:
        passed = bool(within.all())
    check = None
    if rule.check is not None:
        # Under an SQNR rule the element-wise tolerance does not apply (a reduced-precision artifact
        # cannot meet it by design): the check sees every element as within.
        check = rule.check.evaluate(reference, candidate, within if rule.sqnr is None else np.ones_like(within))
        sqnr_judges = rule.sqnr is not None and not rule.check.replaces_sqnr
        passed = (passed and check["passed"]) if sqnr_judges else check["passed"]
    return OutputResult(name, bool(passed), max_abs, mean_abs, tolerance.atol, tolerance.rtol, check=check, **facts)


def compare_steps(name: str, reference_steps: Sequence[np.ndarray], candidate_steps: Sequence[np.ndarray],
                  rule: OutputRule) -> OutputResult:
    """Judge one output of a stream. Element-wise rules and family checks hold at every step;
    SQNR is taken over all steps at once (early steps of a stream may be all zeros). The
    result carries the per-step max abs error and the worst step."""
    for step, (reference, candidate) in enumerate(zip(reference_steps, candidate_steps)):
        error = _shape_and_finite(np.asarray(reference), np.asarray(candidate))
        if error is not None:
            return OutputResult(name, False, atol=rule.tolerance.atol, rtol=rule.tolerance.rtol,
                                error=f"step {step}: {error}")
    if len(reference_steps) != len(candidate_steps):
        return OutputResult(name, False, atol=rule.tolerance.atol, rtol=rule.tolerance.rtol,
                            error=f"{len(candidate_steps)} steps vs reference {len(reference_steps)}")
    if rule.sqnr is not None:
        whole = compare_output(name, np.stack(reference_steps), np.stack(candidate_steps), rule)
        per_step = [compare_output(name, r, c, OutputRule(rule.tolerance)) for r, c in zip(reference_steps, candidate_steps)]
        return _with_steps(whole, per_step, whole.passed, whole.mean_abs, whole.check)
    per_step = [compare_output(name, r, c, rule) for r, c in zip(reference_steps, candidate_steps)]
    return _with_steps(per_step[0], per_step, all(c.passed for c in per_step),
                       float(np.mean([c.mean_abs for c in per_step])), _merge_checks(per_step))


def _with_steps(base: OutputResult, per_step: list[OutputResult], passed: bool, mean_abs: float,
                check: Mapping[str, Any] | None) -> OutputResult:
    maxima = tuple(c.max_abs for c in per_step)
    worst = int(np.argmax(maxima))
    return OutputResult(base.name, bool(passed), maxima[worst], mean_abs, base.atol, base.rtol,
                        worst_step=worst, per_step_max_abs=maxima, check=check, sqnr_db=base.sqnr_db,
                        min_sqnr_db=base.min_sqnr_db, cosine_similarity=base.cosine_similarity)


def _merge_checks(per_step: list[OutputResult]) -> dict[str, Any] | None:
    """One family-check record over all steps: the failed steps, the worst of each figure
    (the lowest agreement, the highest count)."""
    checks = [c.check for c in per_step if c.check]
    if not checks:
        return None
    merged: dict[str, Any] = {"passed": all(c["passed"] for c in checks),
                              "failed_steps": [i for i, c in enumerate(per_step) if c.check and not c.check["passed"]]}
    for key, value in checks[0].items():
        if key != "passed" and isinstance(value, (int, float)) and not isinstance(value, bool):
            values = [c[key] for c in checks]
            merged[key] = float(np.min(values)) if "agree" in key else float(np.max(values))
    return merged


# ---------------------------------------------------------------------------------------------
# Rendering


def _short(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def line_prefix(passed: bool | None, where: Sequence[tuple[str, int]]) -> str:
    """The mark (✓, ✗, or - for skipped) and the padded columns that start every line."""
    mark = "-" if passed is None else ("✓" if passed else "✗")
    return " ".join([mark, *(f"{text:{width}s}" for text, width in where)])


def tick_line(result: OutputResult, where: Sequence[tuple[str, int]], label: str | None = None) -> str:
    """One line for one output: ``✓ onnx   sample[0]  logits  max abs 3.1e-06  atol 1e-04``.

    ``where`` is the columns before the output's name, each (text, width), e.g. the format and
    the case; ``label`` replaces the output's name.
    """
    head = f"{line_prefix(result.passed, where)} {label or result.name:24s}"
    if result.error:
        return f"{head} {result.error}"
    if result.sqnr_db is not None:
        text = (f"{head} SQNR {result.sqnr_db:.1f} dB, needs {result.min_sqnr_db:.0f}  "
                f"(max abs {result.max_abs:.1e}, cosine {result.cosine_similarity:.6f})")
    else:
        text = f"{head} max abs {result.max_abs:.1e}  atol {result.atol:.0e}"
        if result.rtol:
            text += f" + rtol {result.rtol:.0e}·|ref|"
    if result.worst_step is not None:
        text += f"  (worst step {result.worst_step})"
    if result.check:
        text += "  [" + ", ".join(f"{k} {_short(v)}" for k, v in result.check.items() if k != "passed") + "]"
    return text
