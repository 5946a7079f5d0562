"""A sweep over the tiny classifier, run once in-process; the in-process and Ray tests share it."""
from __future__ import annotations

import pytest

from edgesdk.devices.detect import detect_device
from edgesdk.executor import InProcessExecutor
from edgesdk.sweep.matrix import load_matrix
from edgesdk.sweep.runner import run_sweep
from tests.sweep.workloads import MATRIX

@pytest.fixture(scope="session")
def first_sweep(tmp_path_factory):
    """One sweep of the matrix, in-process (test_sweep reads it; the Ray tests reuse its bundles)."""
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "matrix.yaml").write_text(MATRIX)
    local = detect_device().profile.name
    with InProcessExecutor(cpu_workers=1, device=local) as executor:
        summary = run_sweep(load_matrix(folder / "matrix.yaml"), folder / "out", executor, local_profile=local)
    return folder, summary
