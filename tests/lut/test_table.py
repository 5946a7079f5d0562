"""The latency table: predictors fitted on constructed measurements (known answers), the file, the
refusals, and one real build + validation on the tiny supernet through the executor."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

import edgesdk
from edgesdk.devices.detect import detect_device
from edgesdk.errors import UsageError
from edgesdk.lut.measure import LatencyFigure
from edgesdk.lut.table import (
    BlockKey,
    LatencyTable,
    build_table,
    fit_predictors,
    regression_features,
    table_blocks,
    validate_table,
    validation_subnets,
)
from edgesdk.models.lighthubert import max_subnet, min_subnet, sample_subnet

from helpers import constructed_table, fast_block_exporter, fast_subnet_exporter


@pytest.fixture(scope="module")
def supernet():
    return edgesdk.create_model("lighthubert", preset="tiny-supernet")


def block_cost(key: BlockKey) -> float:
    return 2.0 if key.kind == "cnn" else (key.embed_dim * (key.heads + key.ffn_embed / 64) / 200 if key.kind == "layer" else 0.3)


def figure(ms: float) -> LatencyFigure:
    return LatencyFigure(ms, 0.0, ms, ms, 10, 1, "constructed")


def test_tiny_table_has_every_block_of_the_search_space(supernet):
    keys = table_blocks(supernet.config)
    # 1 CNN + per width (3): projection, positional, 2 heads x 3 FFN ratios
    assert len(keys) == 1 + 3 * (2 + 6) and len(set(keys)) == len(keys)
    table = constructed_table(supernet, block_cost, device_profile="x86-64")
    subnet = min_subnet(supernet.config.search_space)  # 64 wide, 1 head, FFN 192, 10 layers
    assert table.table_sum_ms(subnet) == pytest.approx(2.0 + 0.3 + 0.3 + 10 * 64 * (1 + 192 / 64) / 200)


def test_a_scaled_sum_is_recovered_exactly(supernet):
    table = constructed_table(supernet, block_cost, device_profile="x86-64")
    subnets = validation_subnets(supernet.config, 12, seed=0)
    measured = [figure(2.0 * table.table_sum_ms(s) + 5.0) for s in subnets]
    report = fit_predictors(table, subnets, measured)
    assert report.predictor.kind == "table-sum-fit"
    assert report.predictor.coefficients == pytest.approx((2.0, 5.0))
    assert report.fitted_sum.mape_percent < 1e-6 and report.fitted_sum.within_10_percent == 1.0
    assert report.raw_sum.within_10_percent == 0.0  # the raw sum is half the truth
    assert (report.min_subnet_ms, report.max_subnet_ms) == (measured[0].median_ms, measured[1].median_ms)


def test_the_regression_takes_over_when_sums_miss(supernet):
    """Block figures that say nothing (all equal) against whole-subnet times that follow the MACs:
    the fitted sum cannot follow, the regression can, and the report says which is used."""
    table = constructed_table(supernet, lambda key: 1.0, device_profile="x86-64")
    subnets = validation_subnets(supernet.config, 20, seed=1)
    weights = np.array([0.0, 4000.0, 2500.0, 1000.0, 0.0])  # ms per GMAC: time follows the MACs alone
    measured = [figure(float(regression_features(table, s) @ weights)) for s in subnets]
    report = fit_predictors(table, subnets, measured)
    assert report.predictor.kind == "regression"
    assert "regression on whole subnets does better" in report.reason
    assert report.regression.mape_percent < 1e-6
    table = LatencyTable(table.supernet, table.conditions, table.blocks, report)
    probe = sample_subnet(supernet.config.search_space, random.Random(9))
    assert table.predict_ms(probe) == pytest.approx(float(regression_features(table, probe) @ weights))


def test_file_round_trip_digest_and_tampering(supernet, tmp_path):
    table = constructed_table(supernet, block_cost, device_profile="x86-64")
    path = table.save(tmp_path / "lut.json")
    loaded = LatencyTable.load(path)
    assert loaded.digest() == table.digest() and loaded.blocks == table.blocks
    data = json.loads(path.read_text())
    data["blocks"][0]["latency"]["median_ms"] = 0.001
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="does not match its sha256"):
        LatencyTable.load(path)
    assert not list(tmp_path.glob(".lut.json.*"))  # no temporary left behind


def test_conditions_mismatch_is_named(supernet):
    table = constructed_table(supernet, block_cost, device_profile="jetson-orin", seconds=0.5)
    with pytest.raises(UsageError) as error:
        table.conditions.check(device_profile="x86-64", format="tflite", precision="fp16", seconds=2.0)
    message = str(error.value)
    for part in ("device profile 'jetson-orin', this device is 'x86-64'", "format 'onnx', asked 'tflite'",
                 "precision 'fp32', asked 'fp16'", "input length 0.5 s, asked 2 s"):
        assert part in message


def test_real_build_and_validation_on_the_tiny_supernet(supernet, tmp_path):
    """Measured through edgesdk.runtime in the executor's measurement worker (ONNX files written
    by the fast TorchScript exporter of the tests)."""
    table = build_table(supernet, seconds=0.25, repeats=7, warmup=1, exporter=fast_block_exporter, preset="tiny-supernet",
                        rounds=2)
    conditions = table.conditions
    assert conditions.device_profile == detect_device().profile.name and conditions.backend == "onnxruntime"
    assert dict(conditions.runtime_versions)["onnxruntime"] and conditions.samples == 4000 and conditions.frames == 12
    assert conditions.rounds == 2  # 4 + 3 runs, pooled
    assert all(entry.latency.median_ms > 0 and entry.latency.runs == 7 for entry in table.blocks)
    assert conditions.energy.startswith("measured:") or "no power sensor" in conditions.energy
    validated = validate_table(table, supernet, count=4, exporter=fast_subnet_exporter, repeats=3)
    report = validated.validation
    assert [row.subnet for row in report.rows[:2]] == [min_subnet(supernet.config.search_space).to_dict(),
                                                       max_subnet(supernet.config.search_space).to_dict()]
    assert report.min_subnet_ms == report.rows[0].measured.median_ms > 0
    assert report.predictor.kind in ("table-sum-fit", "regression")
    path = validated.save(tmp_path / "lut.json")
    assert LatencyTable.load(path).validation.predictor == report.predictor


def test_search_refuses_a_limit_below_the_smallest_subnet_and_a_table_of_another_setting(supernet, tmp_path):
    """Through the CLI: exit 2 with the smallest subnet's measured latency; exit 2 naming the mismatch;
    exit 2 for an empty audio folder and for audio at another sample rate."""
    import soundfile
    from click.testing import CliRunner

    from edgesdk.cli import cli
    from edgesdk.lut.table import ErrorFigures, Predictor, ValidationReport

    table = constructed_table(supernet, block_cost, device_profile=detect_device().profile.name)
    figures = ErrorFigures(1.0, 1.0, 1.0)
    report = ValidationReport((), figures, figures, figures, Predictor(), "constructed", 12.5, 40.0, 0, "now")
    path = LatencyTable(table.supernet, table.conditions, table.blocks, report).save(tmp_path / "lut.json")
    base = ["search", "lighthubert", "--lut", str(path), "-o", str(tmp_path / "subnet.json")]
    kws = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "examples" / "kws" / "clips")
    runner = CliRunner()
    low = runner.invoke(cli, base + ["--max-latency-ms", "10", "--audio", kws])
    assert low.exit_code == 2, low.output
    assert "below the smallest subnet's measured latency on this device (12.50 ms" in " ".join(low.output.split())
    other = runner.invoke(cli, base + ["--max-latency-ms", "30", "--audio", kws, "--format", "tflite", "--seconds", "1"])
    assert other.exit_code == 2 and "format 'onnx', asked 'tflite'" in other.output and "input length 0.5 s, asked 1 s" in other.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runner.invoke(cli, base + ["--max-latency-ms", "30", "--audio", str(empty)]).exit_code == 2
    eight = tmp_path / "eight"
    eight.mkdir()
    soundfile.write(eight / "a.wav", np.zeros(8000, dtype=np.float32), 8000)
    result = runner.invoke(cli, base + ["--max-latency-ms", "30", "--audio", str(eight)])
    assert result.exit_code == 2 and "8000 Hz" in result.output
    assert not (tmp_path / "subnet.json").exists()


def test_rounds_are_pooled_call_by_call():
    """The pooled median is that of all calls, not the median of the rounds' medians."""
    from dataclasses import replace

    from edgesdk.lut.measure import Measurement, latency_of, pooled

    base = Measurement("b", latency_of([1.0], 1), None, "", "x86-64", "m", "onnxruntime", (), (), (1.0, 1.0, 1.0))
    first = replace(base, latency=latency_of([1.0, 1.0, 9.0], 1), times_ms=(1.0, 1.0, 9.0))
    second = replace(base, latency=latency_of([9.0, 9.0, 9.0, 2.0], 1), times_ms=(9.0, 9.0, 9.0, 2.0),
                     load_average=(3.0, 3.0, 3.0))
    both = pooled([first, second])
    assert both.latency.median_ms == 9.0 and both.latency.runs == 7  # medians 1 and 9 would average to 5
    assert both.times_ms == (1.0, 1.0, 9.0, 9.0, 9.0, 9.0, 2.0) and both.load_average == (2.0, 2.0, 2.0)
