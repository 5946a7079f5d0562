"""The issue's evidence sweep: `edgesdk sweep` on a two-node Ray cluster started on this machine.

ray.cluster_utils.Cluster starts a head (2 CPUs) and a device node (1 CPU) that advertises
``edgesdk.device.<this machine's profile>``, as a Jetson would with
``ray start --address=HEAD:6379 --resources='{"edgesdk.device.jetson-orin": 1}'``; the sweep
joins with ``--ray-address``, so exports run on either node and every measurement on the
device node, one at a time.

    python benchmarks/sweep_two_node.py [benchmarks/sweep_two_node.yaml] [-o out/sweep-two-node]

The run kept in benchmarks/results/sweep_two_node/ (report.md, both plots, results.jsonl) used
this matrix with the checkpoint given by absolute path.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("matrix", nargs="?", type=Path, default=HERE / "sweep_two_node.yaml")
    parser.add_argument("-o", "--output", type=Path, default=HERE.parent / "out" / "sweep-two-node")
    args = parser.parse_args()

    from ray.cluster_utils import Cluster

    from edgesdk.devices.detect import detect_device

    profile = detect_device().profile.name
    os.environ.pop("RAY_ADDRESS", None)
    store = 200 * 2**20
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "object_store_memory": store,
                                                            "include_dashboard": False})
    try:
        device = cluster.add_node(num_cpus=1, object_store_memory=store, resources={f"edgesdk.device.{profile}": 1})
        cluster.wait_for_nodes()
        print(f"cluster {cluster.address}: head {cluster.head_node.node_id[:12]} (2 CPUs), device node "
              f"{device.node_id[:12]} (1 CPU, edgesdk.device.{profile})", flush=True)
        started = time.time()
        result = subprocess.run([sys.executable, "-c", "from edgesdk.cli import main; main()", "sweep",
                                 str(args.matrix), "-o", str(args.output), "--ray-address", cluster.address])
        print(f"sweep exit status {result.returncode} after {time.time() - started:.0f} s", flush=True)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
