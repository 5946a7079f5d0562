"""The table build through the Ray executor, on a real two-node Ray cluster on loopback (one node
advertising this machine's device profile), against the in-process build of the same blocks.

Small: 1 CPU and 100 MB of object store per node; the tiny supernet at 0.25 s, 3 runs per block,
ONNX files from the tests' fast TorchScript exporter.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'edgesdk[ray]')")

from ray.cluster_utils import Cluster  # noqa: E402

import edgesdk  # noqa: E402
from edgesdk.devices.detect import detect_device  # noqa: E402
from edgesdk.executor import RayExecutor  # noqa: E402
from edgesdk.lut.table import build_table  # noqa: E402

from helpers import fast_block_exporter  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
STORE = 100 * 2**20


@pytest.fixture(scope="module")
def ray_executor():
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), saved) if p)  # workers import this checkout
    os.environ.pop("RAY_ADDRESS", None)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": STORE, "include_dashboard": False})
    profile = detect_device().profile.name
    device_node = cluster.add_node(num_cpus=1, object_store_memory=STORE, resources={f"edgesdk.device.{profile}": 1})
    cluster.wait_for_nodes()
    executor = RayExecutor(cluster.address)
    yield executor, device_node.node_id
    executor.close()
    cluster.shutdown()
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


def test_the_table_built_through_ray_has_the_in_process_tables_structure(ray_executor):
    executor, _ = ray_executor
    supernet = edgesdk.create_model("lighthubert", preset="tiny-supernet")
    settings = dict(seconds=0.25, repeats=3, warmup=1, exporter=fast_block_exporter, preset="tiny-supernet")
    local = build_table(supernet, **settings)
    remote = build_table(supernet, executor=executor, **settings)
    assert [entry.key for entry in remote.blocks] == [entry.key for entry in local.blocks]
    assert len(remote.blocks) == 25
    assert all(entry.latency.median_ms > 0 and entry.latency.runs == 3 and entry.latency.warmup == 1
               for entry in remote.blocks)
    assert remote.supernet == local.supernet
    varying = {"load_average", "built_utc"}  # when and under what load, not how
    same = {k: v for k, v in remote.conditions.to_dict().items() if k not in varying}
    assert same == {k: v for k, v in local.conditions.to_dict().items() if k not in varying}
    # the block figures are of one machine: same order of magnitude block by block
    for near, far in zip(local.blocks, remote.blocks):
        assert 0.1 < far.latency.median_ms / near.latency.median_ms < 10, (near.key.name, near.latency, far.latency)


def test_ray_is_imported_only_where_used():
    program = ("import sys, edgesdk.lut.table, edgesdk.lut.search, edgesdk.lut.score, edgesdk.lut.measure, "
               "edgesdk.cli.lut, edgesdk.cli.search; print('ray' in sys.modules)")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, env=environment)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"
