"""edgesdk wrap: streams for stateful files edgesdk did not write.

The models are third-party style: plain torch modules exported with ``torch.onnx.export`` by
hand (no edgesdk metadata), a GRU step with a hidden state, a causal convolution that needs
the tail of the previous chunk, and a recurrent cell with a constant input. Every stream is
compared with the PyTorch module run on the whole sequence (or, for the explicit cell, the
module iterated in PyTorch): an independent reference.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from click.testing import CliRunner  # noqa: E402

import edgesdk  # noqa: E402
from edgesdk.cli import cli  # noqa: E402
from edgesdk.errors import UsageError  # noqa: E402
from edgesdk.runtime import load  # noqa: E402
from edgesdk.runtime.wrap import suggest, suggested_command  # noqa: E402

ATOL = 2e-5


class GRUStep(torch.nn.Module):
    """A GRU over a chunk of frames with its hidden state passed in and out (h0 -> hn)."""

    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(8, 16, batch_first=True)
        self.head = torch.nn.Linear(16, 5)

    def forward(self, x, h0):
        y, hn = self.gru(x, h0)
        return self.head(y), hn


class CausalConv(torch.nn.Module):
    """A valid (unpadded) convolution: each call needs the 4 frames before its chunk."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 6, kernel_size=5)

    def forward(self, x):
        return torch.relu(self.conv(x))


class IgnoresContext(torch.nn.Module):
    """Throws away the first 4 frames it is given: a declared 4-frame context changes nothing."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 6, kernel_size=1)

    def forward(self, x):
        return self.conv(x[:, :, 4:])


class ScaledCell(torch.nn.Module):
    """One recurrent step whose new state is scaled by an input ``scale`` the app keeps fixed."""

    def __init__(self):
        super().__init__()
        self.inp = torch.nn.Linear(4, 8)
        self.rec = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x, state, scale):
        new_state = torch.tanh(self.inp(x) + self.rec(state)) * scale
        return self.head(new_state), new_state


def _export(module, arguments, names, outputs, dynamic, path):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on nn.GRU's flat weights
        program = torch.onnx.export(module, arguments, input_names=names, output_names=outputs,
                                    dynamic_shapes=dynamic, dynamo=True, external_data=False, verbose=False)
    program.save(str(path), external_data=False)
    model = onnx.load(str(path))
    del model.metadata_props[:]  # as a third party would ship it: nothing edgesdk wrote
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("foreign")
    batch = torch.export.Dim("batch", min=1, max=64)
    time = torch.export.Dim("time", min=6, max=4096)
    modules = {"gru": GRUStep().eval(), "conv": CausalConv().eval(), "ignores": IgnoresContext().eval(),
               "cell": ScaledCell().eval()}
    paths = {
        "gru": _export(modules["gru"], (torch.randn(2, 7, 8), torch.zeros(1, 2, 16)), ["x", "h0"], ["y", "hn"],
                       {"x": {0: batch, 1: torch.export.Dim("frames", min=1, max=4096)}, "h0": {1: batch}},
                       folder / "gru.onnx"),
        "conv": _export(modules["conv"], (torch.randn(2, 4, 11),), ["x"], ["y"], {"x": {0: batch, 2: time}},
                        folder / "conv.onnx"),
        "ignores": _export(modules["ignores"], (torch.randn(2, 4, 11),), ["x"], ["y"], {"x": {0: batch, 2: time}},
                           folder / "ignores.onnx"),
        "cell": _export(modules["cell"], (torch.randn(2, 4), torch.zeros(2, 8), torch.ones(1)),
                        ["x", "state", "scale"], ["y", "state_out"], {"x": {0: batch}, "state": {0: batch}, "scale": None},
                        folder / "cell.onnx"),
    }
    return modules, paths


def _cli(arguments):
    return CliRunner().invoke(cli, [str(a) for a in arguments])


def test_gru_stream_equals_the_whole_sequence_in_pytorch(files, tmp_path):
    modules, paths = files
    result = edgesdk.wrap(paths["gru"], tmp_path / "gru", states=["h0=hn"])
    assert {c.name: c.passed for c in result.checks}["state h0 changes"] is True
    model = load(tmp_path / "gru")
    assert [t.name for t in model.inputs] == ["x"] and [s.input for s in model.state_spec] == ["h0"]
    rng = np.random.default_rng(1)
    sequence = rng.standard_normal((3, 17, 8)).astype(np.float32)  # batch 3, 17 frames
    with torch.no_grad():
        reference, _ = modules["gru"](torch.from_numpy(sequence), torch.zeros(1, 3, 16))
    stream = model.stream(batch=3)
    pieces, start = [], 0
    for size in (5, 1, 4, 7):  # odd chunk sizes; the frames axis is free in this file
        pieces.append(stream.push({"x": sequence[:, start:start + size]})["y"])
        start += size
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), reference.numpy(), atol=ATOL)
    assert stream.end() == {}  # no look-ahead: every output was returned by its push; end() resets
    again = stream.push({"x": sequence[:, :5]})["y"]
    np.testing.assert_allclose(again, reference.numpy()[:, :5], atol=ATOL)


def test_end_refuses_a_look_ahead_it_cannot_compute(files, tmp_path):
    # A bundle that declares a look-ahead but no end input (an export before end_input existed).
    _, paths = files
    edgesdk.wrap(paths["gru"], tmp_path / "gru", states=["h0=hn"])
    manifest_path = tmp_path / "gru" / "edgesdk.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["streaming"] = {"frames_per_step": 1, "lookahead_frames": 2}
    manifest_path.write_text(json.dumps(manifest))
    stream = load(tmp_path / "gru").stream()
    assert stream.end() == {}  # nothing pushed yet: nothing owed
    stream.push({"x": np.zeros((1, 3, 8), np.float32)})
    with pytest.raises(UsageError, match="answers 2 frames behind its input but has no end input"):
        stream.end()


def test_gru_state_from_an_npy_file_and_the_self_describing_copy(files, tmp_path):
    modules, paths = files
    init = np.random.default_rng(2).standard_normal((1, 1, 16)).astype(np.float32)
    np.save(tmp_path / "h0.npy", init)
    result = _cli(["wrap", paths["gru"], "-o", tmp_path / "gru", "--state", f"h0=hn:{tmp_path / 'h0.npy'}"])
    assert result.exit_code == 0, result.output
    sequence = np.random.default_rng(3).standard_normal((2, 6, 8)).astype(np.float32)
    with torch.no_grad():
        reference, _ = modules["gru"](torch.from_numpy(sequence), torch.from_numpy(np.repeat(init, 2, axis=1)))
    got = load(tmp_path / "gru").stream(batch=2).push({"x": sequence})["y"]
    np.testing.assert_allclose(got, reference.numpy(), atol=ATOL)
    # The ONNX copy carries the contract in its metadata_props and streams on its own (a
    # zero-initialised state: an init file needs the bundle folder).
    plain = edgesdk.wrap(paths["gru"], tmp_path / "plain", states={"h0": "hn"})
    manifest = plain.manifest
    assert manifest["artifacts"][0]["sha256"] == manifest["extra"]["wrap"]["source_sha256"]
    lone = load(tmp_path / "plain" / "model.contract.onnx")
    with torch.no_grad():
        zero_reference, _ = modules["gru"](torch.from_numpy(sequence), torch.zeros(1, 2, 16))
    np.testing.assert_allclose(lone.stream(batch=2).push({"x": sequence})["y"], zero_reference.numpy(), atol=ATOL)


def test_inspect_and_validate_work_on_a_wrapped_bundle(files, tmp_path):
    _, paths = files
    assert _cli(["wrap", paths["gru"], "-o", tmp_path / "gru", "--state", "h0=hn"]).exit_code == 0
    inspected = _cli(["inspect", tmp_path / "gru"])
    assert inspected.exit_code == 0, inspected.output
    assert "h0 → hn" in inspected.output and "[batch, frames, 8]" in inspected.output
    facts = json.loads(_cli(["inspect", tmp_path / "gru", "--json"]).output)
    assert facts["artifacts"][0]["op_histogram"]["GRU"] == 1
    validated = _cli(["validate", tmp_path / "gru"])
    assert validated.exit_code == 0, validated.output
    assert "✓ onnxruntime" in validated.output


def test_conv_with_carried_context_equals_the_whole_sequence(files, tmp_path):
    modules, paths = files
    result = _cli(["wrap", paths["conv"], "-o", tmp_path / "conv", "--context", "x:2:4"])
    assert result.exit_code == 0, result.output
    assert "✓ context of x matters" in result.output
    assert "✓ a chunk pushed in two halves agrees with it pushed whole" in result.output
    sequence = np.random.default_rng(4).standard_normal((2, 4, 33)).astype(np.float32)
    with torch.no_grad():  # the whole sequence, with the zero history a stream starts from
        reference = modules["conv"](torch.nn.functional.pad(torch.from_numpy(sequence), (4, 0))).numpy()
    model = load(tmp_path / "conv")
    stream = model.stream(batch=2)
    for _ in range(2):  # the second pass starts after end(), which resets: zeros again
        pieces, start = [], 0
        for size in (6, 9, 1, 17):
            pieces.append(stream.push({"x": sequence[:, :, start:start + size]})["y"])
            start += size
        np.testing.assert_allclose(np.concatenate(pieces, axis=2), reference, atol=ATOL)
        assert stream.end() == {}  # nothing owed; the context is zeros again for the second pass
    # Without the carried context the same pushes are wrong after the first chunk.
    alone = np.concatenate([model.run({"x": np.pad(sequence[:, :, s:s + 11], ((0, 0), (0, 0), (4, 0)))})["y"]
                            for s in (0, 11, 22)], axis=2)
    assert np.abs(alone - reference).max() > 1e-2


def test_a_declared_chunk_size_is_enforced_with_a_clear_error(files, tmp_path):
    _, paths = files
    edgesdk.wrap(paths["conv"], tmp_path / "conv", context={"x": (2, 4)}, chunks={"x": (2, 8)})
    stream = load(tmp_path / "conv").stream()
    assert stream.push({"x": np.zeros((1, 4, 8), np.float32)})["y"].shape == (1, 6, 8)
    with pytest.raises(UsageError, match=r"'x': a push carries 8 new entries on axis 2 .* not 7"):
        stream.push({"x": np.zeros((1, 4, 7), np.float32)})


def test_a_context_that_changes_nothing_is_refused(files, tmp_path):
    _, paths = files
    result = _cli(["wrap", paths["ignores"], "-o", tmp_path / "ignores", "--context", "x:2:4"])
    assert result.exit_code == 2
    assert "✗ context of x matters" in result.output and "changes nothing" in result.output
    assert not (tmp_path / "ignores").exists() and not list(tmp_path.glob(".ignores*"))


def test_constant_input_is_fed_by_the_bundle(files, tmp_path):
    modules, paths = files
    result = _cli(["wrap", paths["cell"], "-o", tmp_path / "cell", "--state", "state=state_out", "--const", "scale=0.5"])
    assert result.exit_code == 0, result.output
    model = load(tmp_path / "cell")
    assert [t.name for t in model.inputs] == ["x"]
    steps = np.random.default_rng(5).standard_normal((9, 2, 4)).astype(np.float32)
    state = torch.zeros(2, 8)
    stream = model.stream(batch=2)
    for step in steps:
        with torch.no_grad():
            expected, state = modules["cell"](torch.from_numpy(step), state, torch.tensor([0.5]))
        np.testing.assert_allclose(stream.push({"x": step})["y"], expected.numpy(), atol=ATOL)
    with pytest.raises(UsageError, match=r"'scale': fed by the bundle's contract as a constant"):
        stream.push({"x": steps[0], "scale": np.ones(1, np.float32)})


def test_a_state_that_never_changes_is_refused(files, tmp_path):
    _, paths = files
    # scale 0 keeps the state at zero: the pairing cannot be what the author meant.
    result = _cli(["wrap", paths["cell"], "-o", tmp_path / "cell", "--state", "state=state_out", "--const", "scale=0"])
    assert result.exit_code == 2
    assert "✗ state state changes" in result.output


@pytest.mark.parametrize(("arguments", "message"), [
    (["--state", "nope=hn"], "'nope' is not an input of the model"),
    (["--state", "h0=nope"], "'nope' is not an output of the model"),
    (["--state", "x=hn"], "shape [batch, frames, 8] and the output's [1, batch, 16] differ"),
    (["--state", "h0=y"], "differ; a state keeps its shape"),
    (["--state", "h0=hn", "--const", "x=1:float99"], "'float99' is not a dtype edgesdk knows"),
    (["--state", "h0=hn", "--const", "x=1:int64"], "the model takes 'x' as float32, not int64"),
    (["--state", "h0=hn", "--context", "nope:1:2"], "'nope' is not an input of the model"),
    (["--state", "h0=hn", "--context", "x:7:2"], "context[0].axis is 7, but 'x' has only 3 axes"),
    (["--state", "h0=hn", "--batch-axis", "x:0"], "--batch-axis names 'x', which no --state declares"),
    (["--state", "h0"], "must look like IN=OUT"),
])
def test_bad_declarations_exit_2_naming_them(files, tmp_path, arguments, message):
    _, paths = files
    result = _cli(["wrap", paths["gru"], "-o", tmp_path / "out", *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_suggest_proposes_pairs_and_applies_nothing(files, tmp_path):
    _, paths = files
    assert [(s.input, s.output) for s in suggest(paths["gru"])] == [("h0", "hn")]
    assert [(s.input, s.output) for s in suggest(paths["cell"])] == [("state", "state_out")]
    result = _cli(["wrap", paths["gru"], "--suggest", "-o", tmp_path / "gru"])
    assert result.exit_code == 0
    assert suggested_command(paths["gru"], suggest(paths["gru"]), tmp_path / "gru") in result.output
    assert not (tmp_path / "gru").exists()


def test_existing_output_needs_force(files, tmp_path):
    _, paths = files
    edgesdk.wrap(paths["gru"], tmp_path / "gru", states=["h0=hn"])
    with pytest.raises(UsageError, match="already exists"):
        edgesdk.wrap(paths["gru"], tmp_path / "gru", states=["h0=hn"])
    edgesdk.wrap(paths["cell"], tmp_path / "gru", states=["state=state_out"], constants={"scale": 1.0}, force=True)
    assert [s.input for s in load(tmp_path / "gru").state_spec] == ["state"]


def test_a_tflite_cell_wraps_with_its_signature_names(files, tmp_path):
    """litert-torch names a signature's tensors args_N / output_N; the pairing is declared by those names."""
    litert_torch = pytest.importorskip("litert_torch")
    pytest.importorskip("ai_edge_litert")
    modules, _ = files
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        litert_torch.convert(modules["cell"], (torch.randn(1, 4), torch.zeros(1, 8), torch.ones(1))).export(
            str(tmp_path / "cell.tflite"))
    assert [(s.input, s.output) for s in suggest(tmp_path / "cell.tflite")] == [("args_1", "output_1")]
    result = _cli(["wrap", tmp_path / "cell.tflite", "-o", tmp_path / "cell", "--state", "args_1=output_1",
                   "--const", "args_2=0.5"])
    assert result.exit_code == 0, result.output
    model = load(tmp_path / "cell", backend="litert")
    assert [t.name for t in model.inputs] == ["args_0"]
    stream = model.stream()
    state = torch.zeros(1, 8)
    for step in np.random.default_rng(6).standard_normal((7, 1, 4)).astype(np.float32):
        with torch.no_grad():
            expected, state = modules["cell"](torch.from_numpy(step), state, torch.tensor([0.5]))
        np.testing.assert_allclose(stream.push({"args_0": step})["output_0"], expected.numpy(), atol=ATOL)
    assert _cli(["validate", tmp_path / "cell"]).exit_code == 0
