"""A bundle copied without some of its artifacts loads with what it holds, says what is missing,
still checks the hashes of what is there, and fails only when nothing usable is left."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgesdk.cli import cli
from edgesdk.errors import BackendUnavailable, BundleError, BundleWarning
from edgesdk.runtime import load


def _copy_only(bundle, folder, *names):
    folder.mkdir()
    for name in names:
        source = bundle / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, folder / name)
    return folder


def test_only_the_manifest_and_the_onnx_file_load_and_say_what_is_missing(stateless_bundle, tmp_path):
    bundle = _copy_only(stateless_bundle, tmp_path / "copied", "edgesdk.json", "model.onnx")
    with pytest.warns(BundleWarning, match=r"lacks model.tflite \(listed in its manifest\); using what is there: model.onnx"):
        model = load(bundle)
    assert (model.backend, model.missing_artifacts) == ("onnxruntime", ["model.tflite"])
    features = np.ones((1, 40, 17), np.float32)
    reference = load(stateless_bundle, backend="onnxruntime").run({"features": features})["output"]
    np.testing.assert_array_equal(model.run({"features": features})["output"], reference)
    with pytest.raises(BackendUnavailable, match=r"no tflite artifact for litert \(model.tflite is not in the folder\)"):
        load(bundle, backend="litert")


def test_a_changed_artifact_is_still_refused_and_no_artifact_at_all_is_an_error(stateless_bundle, tmp_path):
    changed = _copy_only(stateless_bundle, tmp_path / "changed", "edgesdk.json", "model.onnx")
    with open(changed / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match="sha256 no longer matches"):
        load(changed)
    empty = _copy_only(stateless_bundle, tmp_path / "empty", "edgesdk.json")
    with pytest.raises(BundleError, match=r"none of its artifacts is there \(model.onnx, model.tflite missing\)"):
        load(empty)
    result = CliRunner().invoke(cli, ["validate", str(empty)])
    assert result.exit_code == 2 and "none of its artifacts is there" in result.output


def test_the_verbs_work_with_what_the_bundle_holds(stateless_bundle, tmp_path):
    bundle = _copy_only(stateless_bundle, tmp_path / "copied", "edgesdk.json", "model.onnx", "samples")
    np.savez(tmp_path / "x.npz", features=np.ones((1, 40, 17), np.float32))
    runner = CliRunner()
    for arguments in (["validate", str(bundle)], ["inspect", str(bundle)],
                      ["run", str(bundle), "--inputs", str(tmp_path / "x.npz")]):
        result = runner.invoke(cli, arguments, env={"COLUMNS": "200"})
        assert result.exit_code == 0, (arguments, result.output)
        assert result.stderr.splitlines()[0] == f"note: {bundle} lacks model.tflite (listed in its manifest); " \
                                                "using what is there: model.onnx", arguments
    validated = runner.invoke(cli, ["validate", str(bundle)])
    assert f"✓ {bundle}: samples reproduce on onnxruntime (model.onnx, float32)" in validated.stdout
