"""Faults during export leave nothing behind and say what happened."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

import edgesdk
from edgesdk import interrupts
from edgesdk.errors import NoSpaceError, UsageError
from edgesdk.exporters import bundle as bundle_module

ROOT = Path(__file__).resolve().parents[2]
FEATURES = {"features": (1, 40, 5)}


def _classifier():
    from examples.python.tiny_models import classifier

    return classifier()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_during_export_clean_up_and_exit_128_plus_signal(tmp_path, signum):
    out = tmp_path / "clf"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", "from edgesdk.cli import main; main()", "export", "examples.python.tiny_models:classifier",
         "--input", "features=1x40x17", "-o", str(out)],
        cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        for _ in range(3000):  # up to 150 s on a busy machine
            if list(tmp_path.glob(".clf.*.partial")) or process.poll() is not None:
                break
            try:
                process.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
        assert list(tmp_path.glob(".clf.*.partial")), "the export never created its partial folder"
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signum, stderr
    assert f"Interrupted by {signal.Signals(signum).name}" in stderr
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_the_converter_swallows_still_stops_the_export(tmp_path, monkeypatch):
    def swallowing_converter(spec, path, converter_log):
        interrupts.request(signal.SIGINT)  # the handler ran, the converter caught KeyboardInterrupt and went on
        path.write_bytes(b"not a model")
        return {"format": "tflite"}

    monkeypatch.setattr(bundle_module, "export_tflite", swallowing_converter)
    with pytest.raises(KeyboardInterrupt) as caught:
        edgesdk.export(_classifier(), tmp_path / "out", example_inputs=FEATURES)
    assert caught.value.exit_code == 130
    assert interrupts.pending() is None
    assert list(tmp_path.iterdir()) == []


def test_stale_partial_of_a_dead_process_is_swept_and_a_live_ones_kept(tmp_path):
    stale = tmp_path / f".out.{_dead_pid()}.abc123xy.partial"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half")
    live = tmp_path / f".out.{os.getpid()}.zzz999qq.partial"
    live.mkdir()
    other = tmp_path / f".out.b.{_dead_pid()}.abc123xy.partial"  # belongs to a bundle named out.b
    other.mkdir()
    edgesdk.export(_classifier(), tmp_path / "out", formats=("onnx",), example_inputs=FEATURES)
    assert not stale.exists()
    assert live.is_dir() and other.is_dir()
    assert (tmp_path / "out" / "edgesdk.json").is_file()


def test_too_little_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(bundle_module.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(NoSpaceError, match=r"no space left on /\S* for .*out \(needs ~\d+ MB, 0 MB free\)") as caught:
        edgesdk.export(_classifier(), tmp_path / "out", example_inputs=FEATURES)
    assert caught.value.exit_code == 2
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_writing_cleans_up_and_says_so(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bundle_module, "export_onnx", full)
    with pytest.raises(NoSpaceError, match=r"no space left on .* \(needs ~\d+ MB\)"):
        edgesdk.export(_classifier(), tmp_path / "out", formats=("onnx",), example_inputs=FEATURES)
    assert list(tmp_path.iterdir()) == []


def test_a_second_export_into_the_same_output_is_refused_while_the_first_runs(tmp_path):
    out = tmp_path / "out"
    with bundle_module.export_lock(out):
        with pytest.raises(UsageError, match=rf"another export is writing {out} \(pid {os.getpid()}\)") as caught:
            edgesdk.export(_classifier(), out, formats=("onnx",), example_inputs=FEATURES)
        assert caught.value.exit_code == 2
        assert [p.name for p in tmp_path.iterdir()] == [".out.lock"]
    assert list(tmp_path.iterdir()) == []
    edgesdk.export(_classifier(), out, formats=("onnx",), example_inputs=FEATURES)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_force_swap_killed_between_its_renames_gets_the_old_bundle_back(tmp_path):
    # What SIGKILL between the two renames of a --force export leaves: no bundle, the old one aside.
    aside = tmp_path / f".out.{_dead_pid()}.k1ll3d00.old"
    (aside / "old").mkdir(parents=True)
    (aside / "old" / "edgesdk.json").write_text('{"the": "previous bundle"}')
    staging = tmp_path / f".out.{_dead_pid()}.n3wb4nd1.partial"
    staging.mkdir()
    removed = bundle_module.sweep_stale_partials(tmp_path / "out")
    assert (tmp_path / "out" / "edgesdk.json").read_text() == '{"the": "previous bundle"}'
    assert not aside.exists() and not staging.exists() and set(removed) == {aside, staging}


def test_an_old_bundle_left_aside_is_removed_when_the_new_one_is_in_place(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "edgesdk.json").write_text("new")
    aside = tmp_path / f".out.{_dead_pid()}.d0n3d0n3.old"
    (aside / "old").mkdir(parents=True)
    live = tmp_path / f".out.{os.getpid()}.l1v3l1v3.old"  # a swap still running in this process
    live.mkdir()
    bundle_module.sweep_stale_partials(tmp_path / "out")
    assert not aside.exists() and live.is_dir()
    assert (tmp_path / "out" / "edgesdk.json").read_text() == "new"


def test_an_interrupt_between_the_renames_of_a_force_export_keeps_the_old_bundle(tmp_path, monkeypatch):
    out = tmp_path / "out"
    edgesdk.export(_classifier(), out, formats=("onnx",), example_inputs=FEATURES)
    before = (out / "edgesdk.json").read_text()
    real_replace = os.replace
    def replace_then_interrupt(source, destination):
        if str(source).endswith(".partial") and Path(destination) == out:
            assert not out.exists()  # the old bundle is aside; the new one is not yet in place
            raise KeyboardInterrupt
        return real_replace(source, destination)

    monkeypatch.setattr(bundle_module.os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        edgesdk.export(_classifier(), out, formats=("onnx",), example_inputs=FEATURES, force=True)
    monkeypatch.setattr(bundle_module.os, "replace", real_replace)
    assert (out / "edgesdk.json").read_text() == before
    assert not list(tmp_path.glob(".out.*"))  # neither the aside folder nor the staging folder is left
