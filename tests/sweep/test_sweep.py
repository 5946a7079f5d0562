"""A real sweep in-process: export -> validate -> profile, the cache, failures recorded, the report, the verb."""
from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from edgesdk.cli import cli
from edgesdk.devices.detect import detect_device
from edgesdk.executor import InProcessExecutor
from edgesdk.folders import pack_bundle
from edgesdk.sweep.matrix import load_matrix
from edgesdk.sweep.runner import run_sweep
from edgesdk.sweep.tasks import MeasureRequest, measure_cell
from tests.sweep.workloads import MATRIX, read_rows


def test_each_cell_gets_one_row_with_its_figures_or_its_error(first_sweep):
    folder, summary = first_sweep
    rows = read_rows(folder / "out")
    assert len(rows) == len(summary.rows) == 2 * 2 * 2  # models x precisions x devices, one format
    ok = rows["classifier/onnx/fp32/local"]
    assert ok["status"] == "ok" and ok["valid"] is True and ok["exit_code"] == 0
    assert ok["p50_ms"] > 0 and ok["latency_provenance"].startswith("measured:")
    assert ok["energy_provenance"] is None or ok["energy_provenance"].split(":")[0] in ("measured", "estimated")
    assert ok["max_abs_error"] is not None and ok["max_abs_error"] < 1e-4
    assert (folder / "out" / "bundles" / ok["export_key"] / "model.onnx").is_file()
    assert ok["size_bytes"] == (folder / "out" / "bundles" / ok["export_key"] / "model.onnx").stat().st_size
    board = rows["classifier/onnx/fp32/fake-board"]
    assert (board["status"], board["stage"], board["exit_code"]) == ("failed", "measure", 5)
    assert board["export_key"] == ok["export_key"]  # one export serves both devices
    broken = rows["broken/onnx/fp32/local"]
    assert (broken["status"], broken["stage"], broken["exit_code"]) == ("failed", "export", 2)
    assert "missing_model" in broken["error"]
    assert rows["classifier/onnx/int8-weight-only/local"]["status"] == "skipped"
    assert (summary.computed, summary.cached, summary.failed, summary.skipped) == (1, 0, 3, 4)


def test_report_has_a_row_per_cell_and_labels_provenance(first_sweep):
    folder, _ = first_sweep
    report = (folder / "out" / "report.md").read_text()
    assert "8 cells: 1 ok (0 from the cache), 3 failed, 4 skipped." in report
    assert report.count("\n| classifier |") == 4 and report.count("\n| broken |") == 4
    assert "measured:perf_counter" in report
    assert "failed at export (exit 2)" in report


def test_a_rerun_computes_only_what_changed(first_sweep, tmp_path):
    folder, first = first_sweep
    out = tmp_path / "out"
    shutil.copytree(folder / "out", out)
    matrix_path = tmp_path / "matrix.yaml"
    matrix_path.write_text(MATRIX)
    local = detect_device().profile.name
    bundle = out / "bundles" / read_rows(out)["classifier/onnx/fp32/local"]["export_key"] / "model.onnx"
    built = bundle.stat().st_mtime_ns
    with InProcessExecutor(cpu_workers=1, device=local) as executor:
        again = run_sweep(load_matrix(matrix_path), out, executor, local_profile=local)
    assert (again.computed, again.cached) == (0, 1)
    assert read_rows(out)["classifier/onnx/fp32/local"]["cached"] is True
    assert read_rows(out)["classifier/onnx/fp32/local"]["p50_ms"] == read_rows(folder / "out")["classifier/onnx/fp32/local"]["p50_ms"]
    # Other profile settings: measured again, the bundle reused.
    matrix_path.write_text(MATRIX.replace("runs: 5", "runs: 6"))
    with InProcessExecutor(cpu_workers=1, device=local) as executor:
        changed = run_sweep(load_matrix(matrix_path), out, executor, local_profile=local)
    assert (changed.computed, changed.cached) == (1, 0)
    assert bundle.stat().st_mtime_ns == built


def test_the_verb_prints_the_counts_and_the_files(first_sweep, tmp_path):
    folder, _ = first_sweep
    out = tmp_path / "out"
    shutil.copytree(folder / "out", out)
    result = CliRunner().invoke(cli, ["sweep", str(folder / "matrix.yaml"), "-o", str(out)])
    # Three cells failed: the status is the first failed cell's in matrix order (the fake board: 5).
    assert result.exit_code == 5, result.output
    assert "8 cells: 0 computed, 1 cached, 3 failed, 4 skipped" in result.output
    assert "exit 5, that of classifier/onnx/fp32/fake-board" in result.output
    assert f"wrote {out / 'report.md'}" in result.output
    # Only the cells that work: exit 0.
    good = tmp_path / "good.yaml"
    good.write_text(MATRIX.replace("devices: [local, fake-board]", "devices: [local]")
                    .replace("  - factory: tests.sweep.workloads:missing_model\n    name: broken\n    inputs: {x: 1x4}\n", ""))
    result = CliRunner().invoke(cli, ["sweep", str(good), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 cells: 0 computed, 1 cached, 0 failed, 1 skipped" in result.output


def test_the_verb_refuses_ray_and_a_ray_address_together(tmp_path):
    matrix = tmp_path / "m.yaml"
    matrix.write_text(MATRIX)
    result = CliRunner().invoke(cli, ["sweep", str(matrix), "-o", str(tmp_path / "o"), "--ray", "--ray-address", "x:1"])
    assert result.exit_code == 2 and "not both" in result.output


def test_a_measurement_given_the_bundle_as_an_archive_unpacks_and_profiles_it(first_sweep):
    folder, _ = first_sweep
    row = read_rows(folder / "out")["classifier/onnx/fp32/local"]
    archive = pack_bundle(folder / "out" / "bundles" / row["export_key"])
    summary = measure_cell(MeasureRequest(bundle=None, archive=archive, format="onnx", runs=3, warmup=1,
                                          energy="estimate", stream=False))
    assert summary.backend == "onnxruntime" and summary.p50_ms > 0
    assert summary.energy_provenance == "estimated:ops" and summary.energy_per_inference_j > 0


def test_an_interrupt_keeps_the_rows_already_finished_and_still_writes_the_report(first_sweep, tmp_path):
    folder, _ = first_sweep
    out = tmp_path / "out"
    shutil.copytree(folder / "out", out)
    (tmp_path / "matrix.yaml").write_text(MATRIX.replace("runs: 5", "runs: 7"))  # the local cell is measured again
    local = detect_device().profile.name
    seen = []

    def say(row):
        seen.append(row.cell)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with InProcessExecutor(cpu_workers=1, device=local) as executor:
            run_sweep(load_matrix(tmp_path / "matrix.yaml"), out, executor, local_profile=local, say=say)
    assert list(read_rows(out)) == seen  # every row said before the interrupt, and no other
    assert "3 cells:" in (out / "report.md").read_text()


def test_a_reduced_precision_cell_reports_the_error_of_its_own_artifact():
    from edgesdk.sweep.tasks import _errors

    validation = {"formats": {
        "onnx/int8-dynamic": {"cases": [{"outputs": {"logits": {"max_abs": 0.02, "sqnr_db": 41.6}}}]},
        "tflite": {"cases": [{"outputs": {"logits": {"max_abs": 1e-6, "sqnr_db": 120.0}}}]},
    }}
    assert _errors(validation, "onnx") == (0.02, 41.6)
    assert _errors(validation, "tflite") == (1e-6, 120.0)
