# The README's two commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JOBS ?= 2

.PHONY: demo test test-full test-arm64 lint benchmarks clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build lies on local disk; an unpinned torch pulls a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edgesdk demo

test: $(STAMP)
	ci/system_packages.sh
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# The torch-free runtime from the wheel in an aarch64 Debian userland under qemu-user (root).
test-arm64: $(STAMP)
	ci/arm64/test_arm64.sh $(BIN)

test-full: $(STAMP)
	$(BIN)/python -m pytest -q -m fullsize

benchmarks: $(STAMP)
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done
	$(BIN)/python benchmarks/assemble_results.py

clean:
	rm -rf $(VENV) out build *.egg-info
