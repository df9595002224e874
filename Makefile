# Two commands do all the set-up on a fresh machine:
#   make demo   installs everything, fetches the default model and scores a sample text
#   make test   installs everything and runs the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU wheel of torch (a plain `torch` would resolve to a multi-GB CUDA build).
TORCH  ?= torch==2.13.0
SAMPLE ?= The quick brown fox jumps over the lazy dog. Language models find some words far more surprising than others.

.PHONY: demo test bench clean

$(BIN)/lightlens: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check '$(TORCH)'
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[offline,notebooks,dev]'
	touch $@

demo: $(BIN)/lightlens
	$(BIN)/lightlens download
	$(BIN)/lightlens score "$(SAMPLE)" --top-k 3

test: $(BIN)/lightlens
	$(BIN)/lightlens download
	$(BIN)/python -m pytest

bench: $(BIN)/lightlens
	$(BIN)/python -m benchmarks cpu

clean:
	rm -rf $(VENV) build *.egg-info
