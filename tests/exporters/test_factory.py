"""Custom export targets: package.module:factory from the current folder, path/to/mods.py:factory from anywhere."""
from __future__ import annotations

import json as stdlib_json
import sys

import pytest
import torch

from edgesdk.errors import UsageError
from edgesdk.exporters.factory import load_factory

FACTORY = "import torch\n\ndef factory():\n    return torch.nn.Linear({width}, 3)\n"


@pytest.fixture
def clean_imports(monkeypatch):
    """load_factory adds folders to sys.path and modules to sys.modules: undo both after the test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_a_module_in_the_current_folder(tmp_path, monkeypatch, clean_imports):
    (tmp_path / "first_b_cwd_mods.py").write_text(FACTORY.format(width=5))
    monkeypatch.chdir(tmp_path)
    model = load_factory("first_b_cwd_mods:factory")
    assert isinstance(model, torch.nn.Linear) and model.in_features == 5


def test_a_file_path_from_another_folder_with_its_sibling_imports(tmp_path, monkeypatch, clean_imports):
    project = tmp_path / "project" / "models"
    project.mkdir(parents=True)
    (project / "first_b_sizes.py").write_text("WIDTH = 7\n")
    (project / "mods.py").write_text("import torch\nfrom first_b_sizes import WIDTH\n\n"
                                     "def factory():\n    return torch.nn.Linear(WIDTH, 3)\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_factory("../project/models/mods.py:factory").in_features == 7  # relative to the current folder
    assert load_factory(f"{project / 'mods.py'}:factory").in_features == 7  # absolute


def test_a_file_named_like_a_loaded_module_does_not_replace_it(tmp_path, clean_imports):
    (tmp_path / "json.py").write_text(FACTORY.format(width=9))
    assert load_factory(f"{tmp_path / 'json.py'}:factory").in_features == 9
    assert sys.modules["json"] is stdlib_json


@pytest.mark.parametrize("target, message", [
    ("{tmp}/missing.py:factory", "no such file"),
    ("{tmp}/broken.py:factory", "No module named 'not_a_module_anywhere'"),
    ("{tmp}/mods.py:nothing", "has no attribute 'nothing'"),
    ("{tmp}/mods.py:", "must look like package.module:factory or path/to/file.py:factory"),
])
def test_bad_file_targets_are_usage_errors(tmp_path, clean_imports, target, message):
    (tmp_path / "broken.py").write_text("import not_a_module_anywhere\n")
    (tmp_path / "mods.py").write_text(FACTORY.format(width=3))
    with pytest.raises(UsageError, match=message) as error:
        load_factory(target.replace("{tmp}", str(tmp_path)))
    assert error.value.exit_code == 2
