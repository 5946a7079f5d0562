"""With a real Ray: a two-node cluster on loopback, one node advertising a fake device profile.

Checks that measurements land only on the device node (one at a time), CPU tasks anywhere, a
measurement gets its bundle as an archive (no shared file system assumed), a cached cell is not
recomputed, a worker killed mid-sweep costs only its own cell (retried once, then failed), and map
over a folder on Ray Data equals the bundle in a loop.
Small: 1 CPU and 100 MB of object store per node.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'edgesdk[ray]')")

from ray.cluster_utils import Cluster  # noqa: E402

import edgesdk  # noqa: E402
from edgesdk.executor import RayExecutor, Task  # noqa: E402
from edgesdk.sweep.corpus import map_corpus  # noqa: E402
from edgesdk.sweep.matrix import load_matrix  # noqa: E402
from edgesdk.sweep.runner import run_sweep  # noqa: E402
from tests.sweep import workloads  # noqa: E402
from tests.sweep.workloads import HELD_FOLDER, MATRIX, read_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEVICE = "fake-board"
STORE = 100 * 2**20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # Workers import edgesdk and tests.sweep.workloads from this checkout.
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), saved) if p)
    os.environ[HELD_FOLDER] = str(tmp_path_factory.mktemp("held"))
    os.environ.pop("RAY_ADDRESS", None)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": STORE, "include_dashboard": False})
    device_node = cluster.add_node(num_cpus=1, object_store_memory=STORE, resources={f"edgesdk.device.{DEVICE}": 1})
    cluster.wait_for_nodes()
    executor = RayExecutor(cluster.address)
    yield executor, device_node.node_id, cluster.head_node.node_id
    executor.close()
    cluster.shutdown()
    os.environ.pop(HELD_FOLDER, None)
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


def test_measurements_land_only_on_the_device_node_one_at_a_time(cluster):
    executor, device_node, _ = cluster
    tasks = [Task(f"m{i}", workloads.hold, (0.2,), kind="measure", device=DEVICE) for i in range(3)]
    tasks += [Task(f"c{i}", workloads.square, (i,)) for i in range(4)]
    tasks += [Task("bad", workloads.fail_conversion, ("net",)), Task("absent", workloads.square, (1,),
                                                                       kind="measure", device="no-such-board")]
    outcomes = {o.key: o for o in executor.run(tasks)}
    measured = [outcomes[f"m{i}"] for i in range(3)]
    assert all(o.ok and o.node == device_node for o in measured)
    windows = sorted(o.value for o in measured)
    for (_, end), (start, _) in zip(windows, windows[1:]):
        assert start >= end
    assert [outcomes[f"c{i}"].value for i in range(4)] == [0, 1, 4, 9]  # CPU tasks: anywhere
    assert (outcomes["bad"].error, outcomes["bad"].exit_code) == ("cannot convert net", 3)
    assert outcomes["absent"].exit_code == 5 and "edgesdk.device.no-such-board" in outcomes["absent"].error


def test_a_sweep_on_ray_measures_on_the_device_node_and_reuses_the_cache(cluster, first_sweep, tmp_path):
    executor, device_node, head_node = cluster
    folder, _ = first_sweep
    out = tmp_path / "out"
    # The in-process sweep's bundles and export cache: same model, format and precision, so the
    # same export keys; only the measurement on the device node is new.
    shutil.copytree(folder / "out" / "bundles", out / "bundles")
    shutil.copytree(folder / "out" / "cache", out / "cache",
                    ignore=shutil.ignore_patterns("measure-*"))
    (tmp_path / "matrix.yaml").write_text(MATRIX.replace("devices: [local, fake-board]", f"devices: [{DEVICE}]")
                                          .replace("precisions: [fp32, int8-dynamic]", "precisions: [fp32]"))
    matrix = load_matrix(tmp_path / "matrix.yaml")
    first = run_sweep(matrix, out, executor, local_profile="unused", shared_filesystem=False)
    rows = {r.cell: r for r in first.rows}
    ok = rows[f"classifier/onnx/fp32/{DEVICE}"]
    assert ok.status == "ok" and ok.measure_node == device_node and ok.p50_ms > 0
    assert (first.computed, first.cached) == (1, 0)
    broken = rows[f"broken/onnx/fp32/{DEVICE}"]
    assert (broken.stage, broken.exit_code) == ("export", 2) and broken.export_node in (device_node, head_node)
    again = run_sweep(matrix, out, executor, local_profile="unused", shared_filesystem=False)
    assert (again.computed, again.cached) == (0, 1)
    cached = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert cached["cached"] is True and cached["measure_node"] == device_node


def test_killing_a_worker_mid_sweep_fails_only_its_cell_after_one_retry(cluster, first_sweep, tmp_path):
    executor, device_node, _ = cluster
    folder, _ = first_sweep
    out = tmp_path / "out"
    shutil.copytree(folder / "out" / "bundles", out / "bundles")  # the classifier's export is cached
    shutil.copytree(folder / "out" / "cache", out / "cache", ignore=shutil.ignore_patterns("measure-*"))
    (tmp_path / "matrix.yaml").write_text(
        MATRIX.replace("tests.sweep.workloads:missing_model\n    name: broken\n    inputs: {x: 1x4}",
                       "tests.sweep.workloads:held_classifier\n    name: held\n    inputs: {features: 1x40x17}")
        .replace("devices: [local, fake-board]", f"devices: [{DEVICE}]").replace("precisions: [fp32, int8-dynamic]", "precisions: [fp32]"))
    held = Path(os.environ[HELD_FOLDER])
    killed: list[int] = []

    def kill_every_attempt() -> None:  # SIGKILL the worker of each export attempt of `held`
        deadline = time.time() + 120
        while len(killed) < 2 and time.time() < deadline:
            for marker in held.glob("attempt-*"):
                pid = int(marker.name.partition("-")[2])
                if pid not in killed:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_every_attempt, daemon=True)
    killer.start()
    summary = run_sweep(load_matrix(tmp_path / "matrix.yaml"), out, executor, local_profile="unused",
                        shared_filesystem=False)
    killer.join(timeout=10)
    rows = {r.cell: r for r in summary.rows}
    assert len(killed) == 2  # the first attempt's worker, then the retry's (max_retries=1)
    victim = rows[f"held/onnx/fp32/{DEVICE}"]
    assert (victim.status, victim.stage, victim.exit_code) == ("failed", "export", 1)
    assert "Worker" in victim.error or "died" in victim.error, victim.error
    survivor = rows[f"classifier/onnx/fp32/{DEVICE}"]
    assert survivor.status == "ok" and survivor.measure_node == device_node and survivor.p50_ms > 0
    assert set(read_rows(out)) == set(rows)  # both rows written to results.jsonl


def test_map_on_ray_data_equals_the_bundle_in_a_loop(cluster, stateless_bundle, tmp_path):
    executor, _, _ = cluster
    rng = np.random.default_rng(3)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(6):
        np.save(inputs / f"x{i}.npy", rng.standard_normal((40, 17 + 8 * (i % 2))).astype(np.float32))
    out = tmp_path / "out"
    summary = map_corpus(stateless_bundle, inputs, out, batch=2, backend="onnxruntime", ray=executor.ray, workers=1)
    assert (summary.done, summary.failed) == (6, ())
    model = edgesdk.load(stateless_bundle, backend="onnxruntime")
    for path in sorted(inputs.glob("*.npy")):
        np.testing.assert_array_equal(np.load(out / path.name), model.run({"features": np.load(path)[None]})["output"])
    (out / "x3.npy").unlink(missing_ok=True)
    resumed = map_corpus(stateless_bundle, inputs, out, backend="onnxruntime", ray=executor.ray, workers=1)
    assert (resumed.done, resumed.skipped) == (1, 5)
    # Ray Data's usage poller would format a traceback every 10 s for the rest of the process,
    # racing torch's ast use on CPython 3.11 (see import_ray).
    assert "data-usage-metrics-poller" not in {thread.name for thread in threading.enumerate()}


def test_the_verb_with_ray_starts_its_own_instance_and_ignores_an_inherited_address(first_sweep, tmp_path):
    folder, _ = first_sweep
    out = tmp_path / "out"
    shutil.copytree(folder / "out", out)
    (tmp_path / "matrix.yaml").write_text(MATRIX.replace("runs: 5", "runs: 4"))  # the local cell is measured again
    environment = {**os.environ, "RAY_ADDRESS": "127.0.0.1:9", "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    program = "from edgesdk.cli import main; main()"
    result = subprocess.run([sys.executable, "-c", program, "sweep", str(tmp_path / "matrix.yaml"), "-o", str(out),
                             "--ray", "--workers", "1"], capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 5, result.stderr[-2000:]  # the first failed cell's: no node is a fake-board
    assert "8 cells: 1 computed, 0 cached, 3 failed, 4 skipped" in result.stdout
    row = read_rows(out)["classifier/onnx/fp32/local"]
    assert row["status"] == "ok" and not row["cached"] and len(row["measure_node"]) == 56  # a Ray node id
