# dvdf developer entry points. Everything installs into a project-local virtualenv (.venv).
#
#   make quickstart   install, then run the README's main job
#   make lint         install, then ruff (configured in pyproject.toml)
#   make test         install, then run the default test suite (what CI runs, after make lint)
#   make gpu-check    on a machine with a CUDA GPU: every CUDA path in one go, figures in gpu_check.json
#
# Torch: on a machine without torch the CPU wheel below is installed first, so pip never
# pulls the multi-GB CUDA build. GPU users bring their own build, e.g.
#   make install TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128"
# or create .venv themselves with torch already in it (an importable torch is kept).

PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.dvdf-installed

.PHONY: install quickstart lint test test-slow test-all bench gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.cfg
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install $(TORCH_SPEC)
	$(BIN)/python -m pip install -e ".[test]"
	touch $(STAMP)

quickstart: install
	RAY_AUTH_MODE=$${RAY_AUTH_MODE:-disabled} $(BIN)/dvdf sweep tune_configs/quickstart.yaml

lint: install
	$(BIN)/ruff check dvdf tests scripts

test: install
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

test-all: install
	$(BIN)/python -m pytest -m ""

bench: install
	$(BIN)/dvdf bench

# < 8 minutes on one GPU; without one it prints one line and exits 2 (scripts/gpu_check.py).
gpu-check: install
	RAY_AUTH_MODE=$${RAY_AUTH_MODE:-disabled} $(BIN)/python scripts/gpu_check.py --out gpu_check.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
