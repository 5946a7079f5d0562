"""Every shell and Python block of the README, the docs pages and the example READMEs runs, so a
page cannot drift from the code. Blocks that cannot run here are marked ``<!-- not-run: why -->``
right before them; slow ones ``<!-- slow -->`` run with ``-m fullsize``."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.markdown import ROOT, blocks, prepare_folder, run

PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "examples").glob("*/README.md")])


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_fence_says_its_language_and_every_marker_its_reason(page):
    found = blocks(page)
    unlabelled = [block.where for block in found if not block.language]
    assert not unlabelled, f"label these fences (bash, python, text, ...): {unlabelled}"
    unexplained = [block.where for block in found if block.not_run is not None and not block.not_run.strip()]
    assert not unexplained, f"say why these blocks do not run (<!-- not-run: reason -->): {unexplained}"


# What a page's blocks must leave behind, beyond exiting 0 (docs/wrap.md: the bundles it promises).
LEAVES = {
    "docs/wrap.md": ("running_sum/edgesdk.json", "running_sum_py/model.contract.onnx"),
    "README.md": ("out/mine/edgesdk.json", "out/clf/model.onnx", "y.npz"),
}


def _run_page(page: Path, folder: Path, include_slow: bool) -> int:
    environment = prepare_folder(folder)
    ran = 0
    for block in blocks(page):
        if not block.runnable or (block.slow and not include_slow):
            continue
        done = run(block, folder, environment)
        output = (done.stdout + done.stderr)[-4000:]
        assert done.returncode == 0, f"{block.where} ({block.language}) exited {done.returncode}:\n{block.code}\n{output}"
        ran += 1
    missing = [name for name in LEAVES.get(_name(page), ()) if not (folder / name).exists()]
    assert not missing, f"{_name(page)} ran but did not write {missing}"
    return ran


FAST_PAGES = [page for page in PAGES if any(b.runnable and not b.slow for b in blocks(page))]
SLOW_PAGES = [page for page in PAGES if any(b.runnable and b.slow for b in blocks(page))]


@pytest.mark.parametrize("page", FAST_PAGES, ids=_name)
def test_the_page_runs(page, tmp_path):
    assert _run_page(page, tmp_path / "reader", include_slow=False) > 0


@pytest.mark.fullsize
@pytest.mark.parametrize("page", SLOW_PAGES, ids=_name)
def test_the_page_runs_with_its_slow_blocks(page, tmp_path):
    assert _run_page(page, tmp_path / "reader", include_slow=True) > 0


def test_a_failing_unmarked_block_fails_the_page_and_markers_are_read(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# page\n\n```bash\ntrue\n```\n\n<!-- not-run: needs a phone -->\n```sh\nadb shell false\n```\n\n"
                    "<!-- slow -->\n```python\nraise SystemExit(3)\n```\n\n```console\n$ false\noutput\n```\n")
    found = blocks(page)
    assert [(b.language, b.not_run, b.slow, b.runnable) for b in found] == [
        ("bash", None, False, True), ("sh", "needs a phone", False, False),
        ("python", None, True, True), ("console", None, False, True)]
    environment = prepare_folder(tmp_path / "reader")
    assert run(found[0], tmp_path / "reader", environment).returncode == 0
    assert run(found[2], tmp_path / "reader", environment).returncode == 3
    assert run(found[3], tmp_path / "reader", environment).returncode == 1  # the $ line, not the output line
    with pytest.raises(AssertionError, match="page.md:17 \\(console\\) exited 1"):
        _run_page(page, tmp_path / "again", include_slow=False)
