# Set-up and the two commands a newcomer runs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The one torch/torchvision pair that imports together on the project's machines (see README, "Install").
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-all lint bench gpu-check gpu-check-priors install clean

$(BIN)/.installed: pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PINS)
	$(BIN)/pip install -q -e '.[dev]' $(TORCH_PINS)
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/python -m llvfsr.demo

test: install
	HF_HUB_OFFLINE=1 RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -q

test-all: install
	HF_HUB_OFFLINE=1 RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -q -m ''

bench: install
	$(BIN)/python -m llvfsr.bench --csv bench.csv

# The prepared GPU check (issue 17, docs/benchmarks.md "GPU check"). Its prior stores are made here, where open_clip
# is installed; the check itself runs on the GPU machine's stock python3 without this venv: make gpu-check OUT=dir
gpu-check-priors: install
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/gpu_check_runs.py prepare

gpu-check:
	@test -n "$(OUT)" || { echo "error: give the output folder: make gpu-check OUT=/tmp/gpu-check" >&2; exit 2; }
	PYTHON=$(PY) bash scripts/gpu_check.sh $(OUT)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) mlflow.db mlartifacts ray_results runs
