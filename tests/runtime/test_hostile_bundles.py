"""A bundle is data from somewhere else: every tampered field is exit 2 naming it, and no
path in it reaches outside its folder."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import edgesdk
from edgesdk.cli import cli
from edgesdk.errors import BundleError
from edgesdk.runtime.manifest import MANIFEST_NAME, sha256_file


@pytest.fixture
def copy_of(tmp_path):
    def make(bundle):
        target = tmp_path / "bundle"
        shutil.copytree(bundle, target)
        return target
    return make


def _edit(bundle, change):
    path = bundle / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


TAMPERED_STATE = [
    ("init", "nan", "state[0].init"),
    ("init", float("inf"), "state[0].init"),
    ("init", "abc", "state[0].init"),
    ("shape", "1x2x40", "state[0].shape"),
    ("shape", [1, -2, 40], "state[0].shape[1]"),
    ("batch_axis", 7, "state[0].batch_axis"),
    ("dtype", "complex256", "state[0].dtype"),
    ("dtype", "object", "state[0].dtype"),
]


@pytest.mark.parametrize("key, value, field", TAMPERED_STATE, ids=[f"{k}={v}" for k, v, _ in TAMPERED_STATE])
def test_tampered_state_fields_are_refused_naming_the_field(streaming_bundle, copy_of, key, value, field):
    bundle = copy_of(streaming_bundle)
    path = bundle / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    manifest["state"][0][key] = value
    # json.dumps writes NaN/Infinity literals, which Python's json reads back as floats.
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=field.replace("[", r"\[").replace("]", r"\]")) as caught:
        edgesdk.load(bundle, backend="onnxruntime")
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("change, field", [
    (lambda m: m.update(model=None), "model must be an object, not null"),
    (lambda m: m.update(inputs={"features": 1}), "inputs must be a list"),
    (lambda m: m["inputs"][0].update(dtype="float128"), r"inputs\[0\].dtype"),
    (lambda m: m["artifacts"][0].update(format="tensorflow"), r"artifacts\[0\].format"),
    (lambda m: m["artifacts"][0].update(sha256=12), r"artifacts\[0\].sha256"),
    (lambda m: m.update(streaming=None), "streaming must be an object, not null"),
    (lambda m: m.update(artifacts=[]), "lists no artifact"),
], ids=["model-null", "inputs-dict", "dtype", "format", "sha-int", "streaming-null", "no-artifacts"])
def test_tampered_sections_are_refused_naming_the_field(streaming_bundle, copy_of, change, field):
    bundle = copy_of(streaming_bundle)
    _edit(bundle, change)
    with pytest.raises(BundleError, match=field):
        edgesdk.load(bundle)


def test_non_utf8_manifest_is_refused(streaming_bundle, copy_of):
    bundle = copy_of(streaming_bundle)
    (bundle / MANIFEST_NAME).write_bytes(b'{"schema_version": 1, "model": "\xff\xfe"}')
    with pytest.raises(BundleError, match="not UTF-8"):
        edgesdk.load(bundle)


@pytest.mark.parametrize("escape", ["../outside/model.onnx", "ABSOLUTE", "../../etc/passwd"])
def test_artifact_outside_the_bundle_is_refused_even_with_a_matching_hash(stateless_bundle, tmp_path, escape):
    bundle = tmp_path / "inner" / "bundle"
    shutil.copytree(stateless_bundle, bundle)
    outside = tmp_path / "inner" / "outside"
    outside.mkdir()
    shutil.copy(bundle / "model.onnx", outside / "model.onnx")
    target = str(outside / "model.onnx") if escape == "ABSOLUTE" else escape

    def change(manifest):
        onnx = next(a for a in manifest["artifacts"] if a["format"] == "onnx")
        onnx["file"] = target
    _edit(bundle, change)
    with pytest.raises(BundleError, match="inside its folder") as caught:
        edgesdk.load(bundle, backend="onnxruntime")
    assert caught.value.exit_code == 2
    result = CliRunner().invoke(cli, ["validate", str(bundle)])
    assert result.exit_code == 2
    assert "inside its folder" in result.output


def test_artifact_symlink_pointing_outside_is_refused(stateless_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(stateless_bundle, bundle)
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(bundle / "model.onnx", outside)
    os.symlink(outside, bundle / "model.onnx")
    assert sha256_file(bundle / "model.onnx") == sha256_file(outside)
    with pytest.raises(BundleError, match="outside the bundle"):
        edgesdk.load(bundle, backend="onnxruntime")


def test_samples_symlink_pointing_outside_is_refused_by_validate(stateless_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(stateless_bundle, bundle)
    outside = tmp_path / "inputs.npz"
    shutil.move(bundle / "samples" / "inputs.npz", outside)
    os.symlink(outside, bundle / "samples" / "inputs.npz")
    result = CliRunner().invoke(cli, ["validate", str(bundle)])
    assert result.exit_code == 2
    assert "outside the bundle" in result.output


def test_damaged_samples_are_exit_2_for_validate_and_run(stateless_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(stateless_bundle, bundle)
    data = (bundle / "samples" / "inputs.npz").read_bytes()
    (bundle / "samples" / "inputs.npz").write_bytes(data[: len(data) // 2])
    result = CliRunner().invoke(cli, ["validate", str(bundle)])
    assert result.exit_code == 2, result.output
    assert "not a readable .npz" in result.output
    feeds = tmp_path / "x.npz"
    np.savez(feeds, features=np.ones((1, 40, 17), np.float32))
    ran = CliRunner().invoke(cli, ["run", str(bundle), "--inputs", str(feeds)])
    assert ran.exit_code == 2, ran.output
    assert "not a readable .npz" in ran.output
