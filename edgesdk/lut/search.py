"""Subnet search under latency, energy and size limits: evolutionary, with a random baseline.

The search never measures while it searches: candidates are kept or dropped by the table's
*predicted* latency against a margin below the limit (``Limits.margin``), and ranked by a score
(``edgesdk.lut.score``, or any callable ``SubnetConfig -> Score``). Afterwards the best few are
exported whole and measured on the device; the best one whose measured median truly fits is
returned. A random search with the same number of scored subnets runs beside it, so the result
says what the evolution bought.

Evolution (as OFA and HAT search): the first generation is the baseline's own first feasible
random draws; each generation takes the best quarter of every subnet scored so far as parents and
adds mutations (each gene redrawn with probability ``mutation_rate``, raised while the best
stalls) and crossovers (each gene from either parent), redrawn until feasible. A width change
alters every layer's cost, so per-gene mutation rarely makes one that fits (on the Small supernet
at a mid limit the evolution stayed at width 384 while random draws found width 512): one child
of each generation is a parent at another width, shrunk in depth and layers until it fits
(``Space.repair``). Genes: the width e,
the depth L, and heads and FFN ratio for each of the deepest depth's layers (the first L are used),
so a depth change keeps the layers it has. Both searches share one score cache, so the draws they
have in common are scored once.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from edgesdk.errors import UsageError
from edgesdk.lut.score import Score

ScoreFunction = Callable[[Any], Score]


@dataclass(frozen=True)
class Limits:
    """What a subnet must satisfy. ``margin``: the search keeps predicted latency (and energy)
    below ``(1 - margin) x`` the limit, so prediction error does not push it over."""

    max_latency_ms: float
    margin: float = 0.05
    max_energy_mj: float | None = None
    max_params: int | None = None

    def __post_init__(self) -> None:
        if not self.max_latency_ms > 0:
            raise UsageError(f"--max-latency-ms must be positive, not {self.max_latency_ms}")
        if not 0 <= self.margin < 1:
            raise UsageError(f"--margin must be in [0, 1), not {self.margin}")
        if self.max_energy_mj is not None and not self.max_energy_mj > 0:
            raise UsageError(f"--max-energy-mj must be positive, not {self.max_energy_mj}")
        if self.max_params is not None and self.max_params < 1:
            raise UsageError(f"--max-params must be positive, not {self.max_params}")

    @property
    def search_latency_ms(self) -> float:
        return self.max_latency_ms * (1 - self.margin)

    def to_dict(self) -> dict[str, Any]:
        return {"max_latency_ms": self.max_latency_ms, "margin": self.margin,
                "search_latency_ms": self.search_latency_ms, "max_energy_mj": self.max_energy_mj,
                "max_params": self.max_params}


@dataclass(frozen=True)
class Candidate:
    subnet: Any  # SubnetConfig
    score: Score
    predicted_ms: float
    predicted_energy_mj: float | None
    params: int


@dataclass(frozen=True)
class SearchTrace:
    """What one search (evolutionary or random) found: every scored candidate, best first."""

    method: str
    ranked: tuple[Candidate, ...]
    evaluations: int
    seconds: float

    @property
    def best(self) -> Candidate:
        return self.ranked[0]


@dataclass(frozen=True)
class Genome:
    embed_dim: int
    layer_num: int
    heads: tuple[int, ...]  # one per layer of the deepest depth
    ratios: tuple[float, ...]

    def subnet(self):
        from edgesdk.models.lighthubert import HEAD_DIM, SubnetConfig

        L = self.layer_num
        return SubnetConfig(self.embed_dim, L, self.heads[:L], tuple(h * HEAD_DIM for h in self.heads[:L]),
                            tuple(int(r * self.embed_dim) for r in self.ratios[:L]))


class Space:
    """The search space as genes, with the feasibility test of ``limits``."""

    def __init__(self, space, feasible: Callable[[Any], bool]):
        self.space = space
        self.depth = max(space.layer_nums)
        self.feasible = feasible

    def random(self, rng: random.Random) -> Genome:
        s = self.space
        return Genome(rng.choice(s.embed_dims), rng.choice(s.layer_nums),
                      tuple(rng.choice(s.heads) for _ in range(self.depth)),
                      tuple(rng.choice(s.ffn_ratios) for _ in range(self.depth)))

    def mutate(self, genome: Genome, rng: random.Random, rate: float) -> Genome:
        s = self.space
        pick = lambda value, choices: rng.choice(choices) if rng.random() < rate else value  # noqa: E731
        return Genome(pick(genome.embed_dim, s.embed_dims), pick(genome.layer_num, s.layer_nums),
                      tuple(pick(h, s.heads) for h in genome.heads), tuple(pick(r, s.ffn_ratios) for r in genome.ratios))

    def change_width(self, genome: Genome, rng: random.Random) -> Genome:
        """The genome at another width (its layers as they are; ``repair`` makes it fit)."""
        others = [e for e in self.space.embed_dims if e != genome.embed_dim]
        return replace(genome, embed_dim=rng.choice(others)) if others else genome

    @staticmethod
    def crossover(a: Genome, b: Genome, rng: random.Random) -> Genome:
        either = lambda x, y: x if rng.random() < 0.5 else y  # noqa: E731
        return Genome(either(a.embed_dim, b.embed_dim), either(a.layer_num, b.layer_num),
                      tuple(either(x, y) for x, y in zip(a.heads, b.heads)),
                      tuple(either(x, y) for x, y in zip(a.ratios, b.ratios)))

    def repair(self, genome: Genome, rng: random.Random) -> Genome | None:
        """Shrink an infeasible genome one step at a time until it fits, keeping its width: a
        random gene kind (depth, or one used layer's heads or FFN ratio), one choice smaller.

        A child that changes width usually overshoots the limit; redrawing it rarely lands in the
        new width's feasible region (it must shrink depth and layers together), so without repair
        the evolution stays at the width it started with. None when even the smallest layers miss.
        """
        s = self.space
        smaller = lambda value, choices: max(c for c in choices if c < value)  # noqa: E731
        while not self.feasible(genome.subnet()):
            L, heads, ratios = genome.layer_num, list(genome.heads), list(genome.ratios)
            moves = {"depth": [0] if L > min(s.layer_nums) else [],
                     "heads": [i for i in range(L) if heads[i] > min(s.heads)],
                     "ratio": [i for i in range(L) if ratios[i] > min(s.ffn_ratios)]}
            kinds = [kind for kind, where in moves.items() if where]
            if not kinds:
                return None
            kind = rng.choice(kinds)
            if kind == "depth":
                L = smaller(L, s.layer_nums)
            elif kind == "heads":
                i = rng.choice(moves["heads"])
                heads[i] = smaller(heads[i], s.heads)
            else:
                i = rng.choice(moves["ratio"])
                ratios[i] = smaller(ratios[i], s.ffn_ratios)
            genome = Genome(genome.embed_dim, L, tuple(heads), tuple(ratios))
        return genome

    def feasible_draw(self, make: Callable[[], Genome], tries: int = 500) -> Genome | None:
        for _ in range(tries):
            genome = make()
            if self.feasible(genome.subnet()):
                return genome
        return None


class ScoreCache:
    """Scores shared by the searches of one run: a subnet both searches draw is scored once (the
    evolution's first generation is the baseline's first draws), while each search still counts
    it against its own budget."""

    def __init__(self, score: ScoreFunction):
        self.score = score
        self.values: dict[Any, Score] = {}

    def __call__(self, subnet) -> Score:
        if subnet not in self.values:
            self.values[subnet] = self.score(subnet)
        return self.values[subnet]


class _Evaluator:
    """Scores each distinct subnet once and counts the budget; remembers each subnet's genome."""

    def __init__(self, score: ScoreFunction, describe: Callable[[Any, Score], Candidate], budget: int):
        self.score, self.describe, self.budget = score, describe, budget
        self.seen: dict[Any, Candidate] = {}
        self.genomes: dict[Any, Genome] = {}

    @property
    def spent(self) -> bool:
        return len(self.seen) >= self.budget

    def __call__(self, genome: Genome) -> Candidate | None:
        subnet = genome.subnet()
        if subnet not in self.seen:
            if self.spent:
                return None
            self.seen[subnet] = self.describe(subnet, self.score(subnet))
            self.genomes[subnet] = genome
        return self.seen[subnet]

    def ranked(self) -> tuple[Candidate, ...]:
        return tuple(sorted(self.seen.values(), key=lambda c: c.score.mean, reverse=True))

    def best_genomes(self, count: int) -> list[Genome]:
        return [self.genomes[candidate.subnet] for candidate in self.ranked()[:count]]


def _random_stream(space: Space, seed: int):
    """Feasible random genomes as the baseline draws them (its generator and seed): the evolution
    starts from the same draws, so it can only lose to the baseline by what it does afterwards."""
    rng = random.Random(seed + 1)
    while True:
        yield space.feasible_draw(lambda: space.random(rng))


def evolutionary_search(space: Space, score: ScoreFunction, describe, *, budget: int, population: int = 24,
                        mutation_rate: float = 0.1, seed: int = 0, say: Callable[[str], None] = lambda m: None) -> SearchTrace:
    """Evolve feasible subnets until ``budget`` distinct subnets have been scored.

    The first generation is the baseline's first ``population`` feasible random draws. Parents are
    the best quarter of *every* subnet scored so far (elitist: the best is never lost); children
    are mutations and crossovers redrawn until they are feasible, and one parent moved to another
    width and shrunk until it fits (``Space.repair``). When the best has not improved
    for two generations the mutation rate doubles (up to 0.5) to leave a local region, and falls
    back once the best improves.
    """
    if population < 4:
        raise UsageError(f"--population must be at least 4, not {population}")
    started = time.perf_counter()
    rng = random.Random(seed)
    evaluate = _Evaluator(score, describe, budget)
    draws = _random_stream(space, seed)
    for _ in range(min(population, budget)):
        genome = next(draws)
        if genome is None:
            break
        evaluate(genome)
    if not evaluate.seen:
        raise UsageError("no random subnet meets the limits (predicted): the limit is too close to the smallest subnet's latency; "
                         "raise it or lower --margin")
    generation, stale, flat, rate = 0, 0, 0, mutation_rate
    best = evaluate.ranked()[0].score.mean
    while not evaluate.spent and stale < 50:
        generation += 1
        parents = evaluate.best_genomes(max(2, population // 4))
        before = len(evaluate.seen)
        for index in range(population - len(parents)):
            if index == 0:  # one child a generation changes width, the move per-gene mutation rarely makes
                genome = space.repair(space.change_width(rng.choice(parents), rng), rng)
            elif index % 2 == 0:
                parent = rng.choice(parents)
                genome = space.feasible_draw(lambda: space.mutate(parent, rng, rate), tries=50)
            else:
                a, b = rng.choice(parents), rng.choice(parents)
                genome = space.feasible_draw(lambda: space.mutate(space.crossover(a, b, rng), rng, rate / 2), tries=50)
            if genome is not None:
                evaluate(genome)
        stale = stale + 1 if len(evaluate.seen) == before else 0
        leader = evaluate.ranked()[0].score.mean
        flat = 0 if leader > best else flat + 1
        best = max(best, leader)
        rate = min(0.5, rate * 2) if flat >= 2 else mutation_rate
        say(f"generation {generation}: best score {best:.4f}, {len(evaluate.seen)}/{budget} scored")
    return SearchTrace("evolutionary", evaluate.ranked(), len(evaluate.seen), time.perf_counter() - started)


def random_search(space: Space, score: ScoreFunction, describe, *, budget: int, seed: int = 0) -> SearchTrace:
    """Score ``budget`` distinct feasible random subnets (upstream's sampling): the baseline."""
    started = time.perf_counter()
    evaluate = _Evaluator(score, describe, budget)
    draws = _random_stream(space, seed)
    misses = 0
    while not evaluate.spent and misses < 20:
        genome = next(draws)
        if genome is None:
            misses += 1
            continue
        before = len(evaluate.seen)
        evaluate(genome)
        misses = misses + 1 if len(evaluate.seen) == before else 0
    if not evaluate.seen:
        raise UsageError("no random subnet meets the limits (predicted)")
    return SearchTrace("random", evaluate.ranked(), len(evaluate.seen), time.perf_counter() - started)


# ----------------------------------------------------------------------------------------------
# The whole search: checks, both searches, re-measurement, subnet.json
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchResult:
    chosen: Candidate
    measured: Any  # LatencyFigure of the chosen subnet, re-measured whole
    measured_energy: Any  # EnergyFigure or None
    remeasured: tuple[tuple[Candidate, Any], ...]  # (candidate, LatencyFigure) for each one measured
    evolutionary: SearchTrace
    random: SearchTrace
    limits: Limits
    min_subnet_ms: float
    table_digest: str
    table_path: str | None
    conditions: dict[str, Any]
    supernet: dict[str, Any]
    timings_s: dict[str, float] = field(default_factory=dict)
    measured_load_average: tuple[float, float, float] | None = None  # 1/5/15-min load while re-measuring

    def to_dict(self) -> dict[str, Any]:
        chosen = self.chosen

        def brief(candidate: Candidate, measured=None) -> dict[str, Any]:
            row = {"subnet": candidate.subnet.to_dict(), "score": candidate.score.mean, "predicted_ms": candidate.predicted_ms}
            if measured is not None:
                row.update(measured_ms=measured.median_ms, fits=measured.median_ms <= self.limits.max_latency_ms)
            return row

        random_best = self.random.best
        return {
            "family": "lighthubert",
            "subnet": chosen.subnet.to_dict(),
            "supernet": self.supernet,
            "params": chosen.params,
            "latency": {
                "predicted_ms": chosen.predicted_ms,
                "predicted_spread_ms": self._predicted_spread,
                "predictor": self.conditions.get("predictor"),
                "measured": self.measured.to_dict(),
                "measured_load_average": self.measured_load_average,
                "table_load_average": self.conditions.get("load_average"),
                "limit_ms": self.limits.max_latency_ms,
                "fits": self.measured.median_ms <= self.limits.max_latency_ms,
            },
            "energy": ({"predicted_mj": chosen.predicted_energy_mj,
                        "measured": self.measured_energy.to_dict() if self.measured_energy else None}
                       if chosen.predicted_energy_mj is not None else
                       {"absent": self.conditions.get("energy")}),
            "score": chosen.score.to_dict(),
            "limits": self.limits.to_dict(),
            "table": {"sha256": self.table_digest, "path": self.table_path, "conditions": self.conditions},
            "min_subnet_ms": self.min_subnet_ms,
            "search": {
                "evolutionary": {"evaluations": self.evolutionary.evaluations, "seconds": self.evolutionary.seconds,
                                 "best_score": self.evolutionary.best.score.mean},
                "random_baseline": {"evaluations": self.random.evaluations, "seconds": self.random.seconds,
                                    "best": brief(random_best)},
                "remeasured": [brief(candidate, figure) for candidate, figure in self.remeasured],
                "score_gain_over_random": chosen.score.mean - random_best.score.mean,
            },
            "export": self._export,
            "timings_s": self.timings_s,
        }

    @property
    def _export(self) -> dict[str, Any]:
        """How to ship the very graph that was measured (fixed shape at the table's length)."""
        seconds, fmt, precision = (self.conditions[key] for key in ("seconds", "format", "precision"))
        precision_flag = "" if precision == "fp32" else f" --precision {precision}"
        return {"options": {"layers": "last", "window_seconds": seconds, "fixed_shape": True},
                "command": f"edgesdk export lighthubert --subnet subnet.json --layers last --window-seconds {seconds:g} "
                           f"--option fixed_shape=true --format {fmt}{precision_flag} -o OUT"}

    @property
    def _predicted_spread(self) -> float | None:
        return self.conditions.get("_spread", {}).get(str(self.chosen.subnet.to_dict()))


def check_search(supernet, table, limits: Limits, *, format: str | None = None, precision: str | None = None,
                 seconds: float | None = None, table_path: str | None = None, executor=None, exporter=None,
                 say: Callable[[str], None] = lambda m: None) -> float:
    """Refuse what no search can answer (exit 2, or 6 for energy without a sensor); returns the
    smallest subnet's measured latency (from the validation, else measured now)."""
    from edgesdk.devices.detect import detect_device
    from edgesdk.errors import MeasurementUnavailable
    from edgesdk.lut.table import check_supernet, export_subnet, measure_subnets
    from edgesdk.models.lighthubert import min_subnet

    name = table_path or "the table"
    check_supernet(table, supernet, name)
    table.conditions.check(device_profile=detect_device().profile.name, format=format, precision=precision,
                           seconds=seconds, table=name)
    if limits.max_energy_mj is not None and not table.has_energy:
        raise MeasurementUnavailable(f"--max-energy-mj needs a table with measured energy; this one has none "
                                     f"({table.conditions.energy})")
    if table.validation is not None:
        min_ms = table.validation.min_subnet_ms
    else:
        say("measuring the smallest subnet (the table is not validated)")
        min_ms = measure_subnets(supernet, [min_subnet(supernet.config.search_space)], table, executor=executor,
                                 exporter=exporter or export_subnet)[0].latency.median_ms
    if limits.max_latency_ms < min_ms:
        raise UsageError(f"--max-latency-ms {limits.max_latency_ms:g} is below the smallest subnet's measured latency "
                         f"on this device ({min_ms:.2f} ms at {table.conditions.seconds:g} s of audio, "
                         f"{table.conditions.format} {table.conditions.precision}): no subnet can meet it")
    return min_ms


def search_subnet(supernet, table, score: ScoreFunction, limits: Limits, *, budget: int = 100, population: int = 16,
                  remeasure: int = 3, seed: int = 0, executor=None, table_path: str | None = None,
                  format: str | None = None, precision: str | None = None, seconds: float | None = None,
                  say: Callable[[str], None] = lambda m: None, exporter=None) -> SearchResult:
    """Search ``supernet``'s space for the best-scoring subnet that fits ``limits`` on this device."""
    from edgesdk.lut.table import export_subnet, measure_subnets
    from edgesdk.models.lighthubert import authors_parameter_count

    timings: dict[str, float] = {}
    exporter = exporter or export_subnet
    started = time.perf_counter()
    min_ms = check_search(supernet, table, limits, format=format, precision=precision, seconds=seconds,
                          table_path=table_path, executor=executor, exporter=exporter, say=say)
    timings["checks"] = time.perf_counter() - started
    config = supernet.config

    def params_of(subnet) -> int:
        return authors_parameter_count(config, subnet) - config.embed_dim  # standalone: no mask_emb

    def feasible(subnet) -> bool:
        if table.predict_ms(subnet) > limits.search_latency_ms:
            return False
        if limits.max_params is not None and params_of(subnet) > limits.max_params:
            return False
        if limits.max_energy_mj is not None:
            energy = table.energy_mj(subnet)
            return energy is not None and energy <= limits.max_energy_mj * (1 - limits.margin)
        return True

    def describe(subnet, value: Score) -> Candidate:
        return Candidate(subnet, value, table.predict_ms(subnet), table.energy_mj(subnet), params_of(subnet))

    space = Space(config.search_space, feasible)
    cached = ScoreCache(score)
    evolution = evolutionary_search(space, cached, describe, budget=budget, population=population, seed=seed, say=say)
    say(f"evolutionary search: {evolution.evaluations} subnets in {evolution.seconds:.1f} s, best score {evolution.best.score.mean:.4f}")
    baseline = random_search(space, cached, describe, budget=evolution.evaluations, seed=seed)
    say(f"random baseline: {baseline.evaluations} subnets in {baseline.seconds:.1f} s, best score {baseline.best.score.mean:.4f}")
    timings["evolutionary_search"], timings["random_search"] = evolution.seconds, baseline.seconds

    started = time.perf_counter()
    remeasured: list[tuple[Candidate, Any]] = []
    loads: list[tuple[float, float, float] | None] = []
    chosen = None
    # Best score first, one at a time: the answer is the best-scoring candidate that truly fits,
    # so the ones after it need no export or measurement.
    for candidate in evolution.ranked[:remeasure]:
        say(f"re-measuring candidate {len(remeasured) + 1} whole (score {candidate.score.mean:.4f}, "
            f"predicted {candidate.predicted_ms:.2f} ms)")
        measurement = measure_subnets(supernet, [candidate.subnet], table, executor=executor, exporter=exporter)[0]
        remeasured.append((candidate, measurement.latency))
        loads.append(measurement.load_average)
        if measurement.latency.median_ms <= limits.max_latency_ms:
            chosen = (candidate, measurement)
            break
    timings["remeasure"] = time.perf_counter() - started
    if chosen is None:
        figures = ", ".join(f"{c.predicted_ms:.1f} predicted / {m.median_ms:.1f} measured" for c, m in remeasured)
        # A device busier now than when the table was measured runs every subnet slower: say so.
        now, then = _load_text(next((load for load in reversed(loads) if load), None)), _load_text(table.conditions.load_average)
        raise UsageError(f"none of the {len(remeasured)} best candidates fits {limits.max_latency_ms:g} ms when measured "
                         f"({figures} ms; load average {now} now, {then} when the table was measured): raise --margin "
                         f"(now {limits.margin:g}), measure on a quieter device, or re-validate the table")
    candidate, measurement = chosen
    conditions = dict(table.conditions.to_dict(), predictor=table.predictor.to_dict())
    spread = table.table_spread_ms(candidate.subnet)
    if table.predictor.kind == "table-sum-fit":
        spread *= abs(table.predictor.coefficients[0])
    conditions["_spread"] = {str(candidate.subnet.to_dict()): spread}
    result = SearchResult(candidate, measurement.latency, measurement.energy, tuple(remeasured), evolution, baseline,
                          limits, min_ms, table.digest(), table_path, conditions, table.supernet.to_dict(), timings,
                          measurement.load_average)
    return result


def _load_text(load) -> str:
    return "/".join(f"{value:.1f}" for value in load) if load else "unknown"


def clean_conditions(data: dict[str, Any]) -> dict[str, Any]:
    """subnet.json's table conditions without the internal spread note."""
    return {key: value for key, value in data.items() if not key.startswith("_")}


def subnet_json(result: SearchResult) -> dict[str, Any]:
    data = result.to_dict()
    data["table"]["conditions"] = clean_conditions(data["table"]["conditions"])
    return data


def ranked_names(candidates: Sequence[Candidate]) -> list[str]:
    return [str(c.subnet.to_dict()) for c in candidates]
