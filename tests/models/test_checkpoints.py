"""Safe checkpoint loading: containers, the allowlist, refusal of arbitrary code, strict keys."""
from __future__ import annotations

import argparse
import sys
import types

import pytest
import torch

from edgesdk.errors import CheckpointError
from edgesdk.models.checkpoints import load_checkpoint, load_state_dict_strict, strip_prefix


def _weights():
    return {"layer.weight": torch.ones(2, 3), "layer.bias": torch.zeros(2)}


def test_plain_state_dict(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save(_weights(), path)
    loaded = load_checkpoint(path)
    assert sorted(loaded["state_dict"]) == ["layer.bias", "layer.weight"]
    assert loaded["extra"] == {} and len(loaded["sha256"]) == 64


def test_container_with_namespace_args_is_unwrapped_to_plain_data(tmp_path):
    path = tmp_path / "container.pth"
    torch.save({"model": _weights(), "epoch": 299, "args": argparse.Namespace(lr=5e-4, model="pvt_v2_b0")}, path)
    loaded = load_checkpoint(path)
    assert "layer.weight" in loaded["state_dict"]
    assert loaded["extra"] == {"epoch": 299, "args": {"lr": 5e-4, "model": "pvt_v2_b0"}}


@pytest.fixture
def fake_yacs(monkeypatch):
    """A stand-in yacs package: the checkpoint is pickled with it, then it disappears."""
    package, module = types.ModuleType("yacs"), types.ModuleType("yacs.config")

    class CfgNode(dict):
        def __init__(self, init=None):
            super().__init__(init or {})
            self.__dict__["__immutable__"] = False

    CfgNode.__module__ = "yacs.config"
    CfgNode.__qualname__ = "CfgNode"
    module.CfgNode = CfgNode
    package.config = module
    monkeypatch.setitem(sys.modules, "yacs", package)
    monkeypatch.setitem(sys.modules, "yacs.config", module)
    return CfgNode


def test_yacs_config_is_read_as_plain_dicts_without_yacs(tmp_path, fake_yacs, monkeypatch):
    path = tmp_path / "slab.pth"
    config = fake_yacs({"MODEL": fake_yacs({"TYPE": "swin", "NUM_CLASSES": 1000}), "TRAIN": fake_yacs({"EPOCHS": 300})})
    torch.save({"model": _weights(), "config": config, "max_accuracy": 81.8}, path)
    monkeypatch.delitem(sys.modules, "yacs.config")
    monkeypatch.delitem(sys.modules, "yacs")
    loaded = load_checkpoint(path)
    assert loaded["extra"]["config"] == {"MODEL": {"TYPE": "swin", "NUM_CLASSES": 1000}, "TRAIN": {"EPOCHS": 300}}
    assert type(loaded["extra"]["config"]) is dict


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_that_needs_code_is_refused_with_the_reason(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"model": _weights(), "hook": Payload()}, path)
    with pytest.raises(CheckpointError, match="needs arbitrary code.*weights_only.*print") as caught:
        load_checkpoint(path)
    assert caught.value.exit_code == 2
    assert "this must never run" not in capsys.readouterr().out


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(garbage)
    empty = tmp_path / "nothing.pth"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(CheckpointError, match="holds no state_dict"):
        load_checkpoint(empty)


def test_strict_loading_names_missing_unexpected_and_misshapen_keys():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    state = {"0.weight": torch.ones(2, 4), "extra.bias": torch.zeros(1)}
    with pytest.raises(CheckpointError) as caught:
        load_state_dict_strict(model, state, source="ckpt.pth")
    message = str(caught.value)
    assert "missing keys: 0.bias" in message
    assert "unexpected keys: extra.bias" in message
    assert "0.weight (2, 4) vs model (2, 3)" in message


def test_strip_prefix_only_when_every_key_has_it():
    assert list(strip_prefix({"module.a": 1, "module.b": 2}, "module.")) == ["a", "b"]
    assert list(strip_prefix({"module.a": 1, "b": 2}, "module.")) == ["module.a", "b"]


class ConfigObject:
    """A class of the user's own, as a training script pickles it beside the weights."""

    def __init__(self):
        self.depth = 4


def test_refusal_is_edgesdks_sentence_not_torchs_advice_to_disable_safety(tmp_path):
    path = tmp_path / "custom.pth"
    torch.save({"model": _weights(), "config": ConfigObject()}, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "needs arbitrary code to unpickle" in message
    assert "ConfigObject" in message
    assert "weights_only=False" not in message


def test_a_text_file_as_checkpoint_is_a_usage_error(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello, this is no checkpoint\n")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as caught:
        load_checkpoint(path)
    assert caught.value.exit_code == 2
