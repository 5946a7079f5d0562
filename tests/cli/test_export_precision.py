"""edgesdk export --precision: bad input is a clear error with exit 2 and nothing written."""
from __future__ import annotations

import wave

import numpy as np
import pytest
from click.testing import CliRunner

from edgesdk.cli import cli

BASE = ["export", "lmuformer", "--preset", "tiny", "--random-weights", "--stream"]


def _wavs(folder, count, rate_hz):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        with wave.open(str(folder / f"clip{index}.wav"), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(rate_hz)
            handle.writeframes((rng.standard_normal(rate_hz // 2) * 3000).astype("<i2").tobytes())
    return folder


def _images(folder, count):
    from PIL import Image

    folder.mkdir()
    for index in range(count):
        Image.new("RGB", (32, 32), (index * 40, 10, 200)).save(folder / f"image{index}.png")
    return folder


@pytest.mark.parametrize("arguments, message", [
    (["--precision", "int4"], "'int4' is not one of"),
    (["--precision", "fp32,int8-static"], "int8-static needs --calibration-data"),
    (["--precision", "int8-weight-only", "--format", "onnx"], "int8-weight-only is not available for onnx"),
    (["--precision", "int8-dynamic", "--quantize", "int8"], "give one of them"),
    (["--keep-float", "GELU"], "add --precision"),
    (["--precision", "fp32", "--keep-float", "GELU"], "fp32 keeps everything float"),
    (["--precision", "fp32", "--min-sqnr", "20"], "--min-sqnr applies"),
])
def test_bad_precision_arguments_exit_2(tmp_path, arguments, message):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, BASE + arguments + ["-o", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_calibration_data_must_be_16_khz_wavs(tmp_path):
    folder = _wavs(tmp_path / "wavs8k", 4, 8000)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, BASE + ["--precision", "int8-static", "--calibration-data", str(folder), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "8000 Hz" in result.output and "16000 Hz" in result.output
    assert not out.exists()


def test_calibration_data_of_the_wrong_modality_or_too_small(tmp_path):
    runner = CliRunner()
    images = _images(tmp_path / "images", 4)
    result = runner.invoke(cli, BASE + ["--precision", "int8-static", "--calibration-data", str(images), "-o", str(tmp_path / "a")])
    assert result.exit_code == 2 and "holds images; this model takes audio" in result.output, result.output
    few = _wavs(tmp_path / "few", 2, 16000)
    result = runner.invoke(cli, BASE + ["--precision", "int8-static", "--calibration-data", str(few), "-o", str(tmp_path / "b")])
    assert result.exit_code == 2 and "at least 4 are needed" in result.output, result.output
    result = runner.invoke(cli, BASE + ["--precision", "int8-dynamic", "--calibration-data", str(few), "-o", str(tmp_path / "c")])
    assert result.exit_code == 2 and "applies to int8-static" in result.output, result.output
    assert not any((tmp_path / name).exists() for name in "abc")


def test_keep_float_pattern_that_matches_nothing_says_so(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, BASE + ["--format", "tflite", "--precision", "int8-dynamic",
                                             "--keep-float", "NO_SUCH_OP", "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "'NO_SUCH_OP' matches no op" in result.output
    assert not out.exists() and not list(tmp_path.glob(".out.*"))  # nothing half-written


def test_missing_quantizer_is_backend_unavailable_and_nothing_is_written(tmp_path, monkeypatch):
    """Without onnxruntime's quantizer no int8 ONNX can be written: exit 5, no bundle left."""
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)  # its import raises ImportError
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, BASE + ["--format", "onnx", "--precision", "int8-dynamic", "-o", str(out)])
    assert result.exit_code == 5, result.output
    assert "ONNX int8-dynamic needs onnxruntime" in result.output and "edgesdk[export]" in result.output
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_wavs_for_a_vision_model_are_the_wrong_modality(tmp_path):
    folder = _wavs(tmp_path / "wavs", 4, 16000)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", "slab", "--preset", "tiny", "--precision", "int8-static",
                                      "--calibration-data", str(folder), "--random-weights", "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "holds WAV files; this model takes images" in result.output
    assert not out.exists()
