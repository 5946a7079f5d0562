"""Fuzz: mutated manifests and feeds never end in a traceback, and nothing is written outside
the output folder. A few seconds in `make test`; `pytest -m fuzz_long` runs many more cases."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesdk.cli import cli
from edgesdk.runtime.manifest import MANIFEST_NAME

# What a documented failure may exit with: usage (2), validation (4), backend unavailable (5).
DOCUMENTED_EXITS = {0, 2, 4, 5}

ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["../escape.onnx", "/etc/passwd", "nan", "float32", "batch", "onnx", "tflite", "model.onnx"]),
    st.lists(st.integers(min_value=-3, max_value=70), max_size=4), st.just({}), st.just([]),
)


def _paths(value, prefix=()):
    """Every (path) into a JSON value, containers included."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


def _mutate(manifest, path, replacement, delete):
    if not path:
        return replacement
    parent = manifest
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return manifest


def _snapshot(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")}


def _fuzz_once(source: Path, data, workdir: Path) -> None:
    bundle = workdir / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    shutil.copytree(source, bundle)
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    paths = list(_paths(manifest))
    path = data.draw(st.sampled_from(paths), label="path")
    delete = bool(path) and data.draw(st.booleans(), label="delete")
    mutated = _mutate(manifest, path, data.draw(ODD_VALUES, label="value"), delete)
    (bundle / MANIFEST_NAME).write_text(json.dumps(mutated))

    feeds = workdir / "feeds.npz"
    frames = data.draw(st.sampled_from([0, 1, 17, 33]), label="frames")
    dtype = data.draw(st.sampled_from(["float32", "float64", "int8"]), label="dtype")
    name = data.draw(st.sampled_from(["features", "x"]), label="feed name")
    np.savez(feeds, **{name: np.ones((1, 40, frames), dtype)})
    outside_before = _snapshot(workdir.parent)

    runner = CliRunner()
    for args in (["validate", str(bundle)], ["inspect", str(bundle)],
                 ["run", str(bundle), "--inputs", str(feeds), "-o", str(workdir / "out.npz")]):
        result = runner.invoke(cli, args)
        assert result.exit_code in DOCUMENTED_EXITS, (args, path, result.output, result.exception)
        if result.exit_code != 0:
            assert isinstance(result.exception, SystemExit), (args, path, repr(result.exception))
            assert "Traceback" not in result.output
    after = _snapshot(workdir.parent)
    changed = {p for p in after if not p.startswith(str(workdir)) and after[p] != outside_before.get(p)}
    assert not changed, changed


def _run_fuzz(source: Path, examples: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fuzz"
        workdir = root / "work"
        workdir.mkdir(parents=True)

        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
        @given(st.data())
        def case(data):
            _fuzz_once(source, data, workdir)

        case()


def test_mutated_manifests_and_feeds_exit_with_documented_codes(stateless_bundle):
    _run_fuzz(stateless_bundle, examples=40)


@pytest.mark.fuzz_long
def test_mutated_manifests_and_feeds_long_run(stateless_bundle):
    _run_fuzz(stateless_bundle, examples=600)
