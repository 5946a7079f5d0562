"""edgesdk run: every bad input is exit 2 with a sentence, and -o writes what it says."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from click.testing import CliRunner

from edgesdk.cli import cli


@pytest.fixture
def runner():
    return CliRunner()


def test_npy_and_truncated_npz_as_inputs_are_exit_2(runner, stateless_bundle, tmp_path):
    npy = tmp_path / "x.npy"
    np.save(npy, np.ones((1, 40, 17), np.float32))
    result = runner.invoke(cli, ["run", str(stateless_bundle), "--inputs", str(npy), "--backend", "onnxruntime"])
    assert result.exit_code == 2, result.output
    assert "(.npy)" in result.output
    good = tmp_path / "good.npz"
    np.savez(good, features=np.ones((1, 40, 17), np.float32))
    truncated = tmp_path / "cut.npz"
    truncated.write_bytes(good.read_bytes()[:100])
    result = runner.invoke(cli, ["run", str(stateless_bundle), "--inputs", str(truncated), "--backend", "onnxruntime"])
    assert result.exit_code == 2, result.output
    assert "not a readable .npz" in result.output


def test_stream_with_zero_steps_is_exit_2(runner, streaming_bundle, tmp_path):
    empty = tmp_path / "empty.npz"
    np.savez(empty, features=np.zeros((0, 1, 1, 40), np.float32))
    result = runner.invoke(cli, ["run", str(streaming_bundle), "--inputs", str(empty), "--stream"])
    assert result.exit_code == 2, result.output
    assert "zero steps" in result.output


def test_output_into_a_missing_folder_is_exit_2(runner, stateless_bundle, tmp_path):
    feeds = tmp_path / "x.npz"
    np.savez(feeds, features=np.ones((1, 40, 17), np.float32))
    result = runner.invoke(cli, ["run", str(stateless_bundle), "--inputs", str(feeds),
                                 "-o", str(tmp_path / "no" / "such" / "y.npz")])
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.output


def test_output_without_suffix_reports_the_file_it_writes(runner, stateless_bundle, tmp_path):
    feeds = tmp_path / "x.npz"
    np.savez(feeds, features=np.ones((1, 40, 17), np.float32))
    result = runner.invoke(cli, ["run", str(stateless_bundle), "--inputs", str(feeds), "-o", str(tmp_path / "y"),
                                 "--backend", "onnxruntime"])
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'y.npz'}" in result.output
    assert np.load(tmp_path / "y.npz")["output"].shape == (1, 12)


def test_wav_from_a_device_file_is_refused_without_reading_it(runner, streaming_bundle):
    result = runner.invoke(cli, ["run", str(streaming_bundle), "--wav", "/dev/zero"])
    assert result.exit_code == 2, result.output
    assert "not a regular file" in result.output


def test_wav_larger_than_the_limit_is_refused(tmp_path, monkeypatch):
    from edgesdk.errors import UsageError
    from edgesdk.runtime import audio

    monkeypatch.setattr(audio, "MAX_WAV_BYTES", 1 << 20)
    big = tmp_path / "big.wav"
    data_bytes = 2 << 20
    with open(big, "wb") as handle:  # a real 16 kHz mono header, then 2 MiB of sparse samples
        handle.write(struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, 1,
                                 16000, 32000, 2, 16, b"data", data_bytes))
        handle.truncate(44 + data_bytes)
    with pytest.raises(UsageError, match="at most 1 MiB.*stream it"):
        audio.read_wav(big)


def test_auto_chooses_only_among_artifacts_that_take_the_feeds(runner, stateless_bundle, tmp_path):
    # The ONNX file keeps the dynamic frame axis; the TFLite file is static at 17 frames.
    feeds = tmp_path / "x33.npz"
    np.savez(feeds, features=np.ones((1, 40, 33), np.float32))
    result = runner.invoke(cli, ["run", str(stateless_bundle), "--inputs", str(feeds), "--json"])
    assert result.exit_code == 0, result.output
    assert "onnxruntime: the only artifact that takes these feeds" in result.stderr
    assert "litert refused these feeds" in result.stderr
    feeds_wrong = tmp_path / "x_wrong.npz"
    np.savez(feeds_wrong, features=np.ones((1, 41, 33), np.float32))
    refused = runner.invoke(cli, ["run", str(stateless_bundle), "--inputs", str(feeds_wrong)])
    assert refused.exit_code == 2
    assert "feed 'features' has shape (1, 41, 33)" in refused.output


def test_an_artifact_that_failed_validation_warns_and_require_valid_refuses(runner, stateless_bundle, tmp_path, caplog):
    import json
    import logging
    import shutil

    import edgesdk

    bundle = tmp_path / "invalid"
    shutil.copytree(stateless_bundle, bundle)
    manifest = json.loads((bundle / "edgesdk.json").read_text())
    manifest["valid"] = False
    for artifact in manifest["artifacts"]:
        artifact["valid"] = False
    (bundle / "edgesdk.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="edgesdk.runtime.model"):
        assert edgesdk.load(bundle, backend="onnxruntime").valid is False
    assert "the onnx artifact model.onnx FAILED validation at export" in caplog.text
    assert edgesdk.load(stateless_bundle, backend="onnxruntime").valid is True
    feeds = tmp_path / "x.npz"
    np.savez(feeds, features=np.ones((1, 40, 17), np.float32))
    warned = runner.invoke(cli, ["run", str(bundle), "--inputs", str(feeds), "--backend", "onnxruntime"])
    assert warned.exit_code == 0
    assert "warning: model.onnx failed validation at export" in warned.stderr
    refused = runner.invoke(cli, ["run", str(bundle), "--inputs", str(feeds), "--backend", "onnxruntime",
                                  "--require-valid"])
    assert refused.exit_code == 4
    assert "failed validation at export" in refused.output
