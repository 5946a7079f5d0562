"""edgesdk map in-process: outputs per input equal a plain loop over the runtime; resumable."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import edgesdk
from edgesdk.cli import cli
from edgesdk.errors import UsageError
from edgesdk.sweep.corpus import BundleRunner, discover, map_corpus


@pytest.fixture(scope="module")
def feeds(tmp_path_factory):
    """Twelve feeds for the classifier, two lengths (17 and 33 frames), in a nested folder."""
    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(7)
    for i in range(12):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        frames = 17 if i < 6 else 33
        np.save(sub / f"clip{i:02d}.npy", rng.standard_normal((40, frames)).astype(np.float32))
    return folder


def _loop(bundle, folder):
    model = edgesdk.load(bundle, backend="onnxruntime")  # its ONNX file takes any number of frames
    return {str(p.relative_to(folder).with_suffix("")): model.run({"features": np.load(p)[None]})["output"]
            for p in sorted(folder.rglob("*.npy"))}


def test_map_equals_running_the_bundle_in_a_loop_and_resumes(stateless_bundle, feeds, tmp_path):
    output_name = edgesdk.load(stateless_bundle).manifest["outputs"][0]["name"]
    assert output_name == "output"
    out = tmp_path / "out"
    summary = map_corpus(stateless_bundle, feeds, out, batch=4, backend="onnxruntime")
    assert (summary.done, summary.skipped, summary.failed) == (12, 0, ())
    expected = _loop(stateless_bundle, feeds)
    for name, value in expected.items():
        np.testing.assert_array_equal(np.load(out / f"{name}.npy"), value)
    (out / "a" / "clip01.npy").unlink()
    again = map_corpus(stateless_bundle, feeds, out, backend="onnxruntime")
    assert (again.done, again.skipped) == (1, 11)
    np.testing.assert_array_equal(np.load(out / "a" / "clip01.npy"), expected["a/clip01"])


def test_a_bad_input_fails_alone_and_the_verb_exits_with_its_code(stateless_bundle, feeds, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "good.npy", np.load(feeds / "b" / "clip00.npy"))
    np.save(folder / "wrong.npy", np.zeros((3, 3, 3, 3), dtype=np.float32))
    (folder / "not-audio.wav").write_bytes(b"RIFF....WAVE")
    result = CliRunner().invoke(cli, ["map", str(stateless_bundle), str(folder), "-o", str(tmp_path / "out"),
                                       "--backend", "onnxruntime"])
    assert result.exit_code == 2, result.output
    assert "1 written, 0 already in" in result.output and "2 failed" in result.output
    assert (tmp_path / "out" / "good.npy").is_file() and not (tmp_path / "out" / "wrong.npy").exists()


def test_a_list_file_names_inputs_and_an_empty_folder_is_an_error(feeds, tmp_path):
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"# two clips\n{feeds / 'a' / 'clip01.npy'}\n{feeds / 'b' / 'clip00.npy'}\n")
    items = discover(listing)
    assert [i.path for i in items] == [str(feeds / "a" / "clip01.npy"), str(feeds / "b" / "clip00.npy")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no .wav or .npy"):
        discover(tmp_path / "empty")


def test_map_and_the_executor_need_no_torch(stateless_bundle, feeds, tmp_path):
    program = (
        "import sys\n"
        "sys.modules['torch'] = None  # any `import torch` now raises ImportError\n"
        "import edgesdk.executor\n"
        "from edgesdk.cli import main\n"
        f"sys.argv = ['edgesdk', 'map', {str(stateless_bundle)!r}, {str(feeds / 'a')!r}, '-o', {str(tmp_path / 'o')!r},"
        " '--backend', 'onnxruntime']\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "6 written, 0 already in" in result.stdout
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [f"clip{i:02d}.npy" for i in (1, 3, 5, 7, 9, 11)]


class _RowSums:
    """A stand-in runtime model with a dynamic batch axis: y[b] = sum of x[b], and a call count."""

    is_streaming = False
    manifest = {"inputs": [{"name": "x", "dtype": "float32"}], "outputs": [{"name": "y"}], "model": {}}

    def __init__(self):
        self.calls = []

    def static_shape(self, name):
        return ["batch", 3, "frames"]

    def run(self, feeds):
        self.calls.append(feeds["x"].shape)
        return {"y": feeds["x"].sum(axis=(1, 2))[:, None]}


def test_batches_of_equal_shapes_are_stacked_into_one_call_and_split_back(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((3, 5)).astype(np.float32) for _ in range(3)] + [np.ones((3, 9), np.float32)]
    paths = []
    for i, array in enumerate(arrays):
        np.save(tmp_path / f"{i}.npy", array)
        paths.append(tmp_path / f"{i}.npy")
    model = _RowSums()
    runner = BundleRunner(model)
    stacked = runner.run(paths[:3])
    assert model.calls == [(3, 3, 5)]
    for array, result in zip(arrays, stacked):
        np.testing.assert_allclose(result["y"], [[array.sum()]], rtol=1e-6)
    model.calls.clear()
    mixed = runner.run(paths[1:])  # two lengths: one call per input
    assert model.calls == [(1, 3, 5), (1, 3, 5), (1, 3, 9)]
    np.testing.assert_allclose(mixed[2]["y"], [[27.0]])


class _FixedBatchRowSums(_RowSums):
    """The same model with a static batch of 2 (as a TFLite file exported at batch 2): refuses any other."""

    def static_shape(self, name):
        return [2, 3, 5]

    def run(self, feeds):
        if feeds["x"].shape[0] != 2:
            raise UsageError(f"batch must be 2, got {feeds['x'].shape[0]}")
        return super().run(feeds)


def test_a_fixed_batch_is_filled_in_calls_of_its_size_and_the_last_call_padded(tmp_path):
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((3, 5)).astype(np.float32) for _ in range(3)]
    paths = []
    for i, array in enumerate(arrays):
        np.save(tmp_path / f"{i}.npy", array)
        paths.append(tmp_path / f"{i}.npy")
    model = _FixedBatchRowSums()
    results = BundleRunner(model).run(paths)
    assert model.calls == [(2, 3, 5), (2, 3, 5)]  # 3 inputs: a full call, then one input and one padding row
    for array, result in zip(arrays, results):
        np.testing.assert_allclose(result["y"], [[array.sum()]], rtol=1e-5)
