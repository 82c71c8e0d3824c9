# Set-up and the two commands a newcomer runs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every dependency pinned to the versions the tests pass with (torch 2.14.1 with torchvision 0.29.1, the pair that
# imports together; see README, "Install"). `make lock` rewrites it from the venv.
LOCK := constraints.txt

.PHONY: demo test test-all lint lock bench gpu-check gpu-check-priors install clean

$(BIN)/.installed: pyproject.toml $(LOCK)
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c $(LOCK) -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	PYTHON=$(BIN)/python bash scripts/demo.sh

test: install
	HF_HUB_OFFLINE=1 RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -q

test-all: install
	HF_HUB_OFFLINE=1 RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -q -m ''

bench: install
	$(BIN)/python -m bench --csv bench.csv

# The prepared GPU check (issue 17, docs/benchmarks.md "GPU check"). Its prior stores are made here, where open_clip
# is installed; the check itself runs on the GPU machine's stock python3 without this venv: make gpu-check OUT=dir
gpu-check-priors: install
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/gpu_check_runs.py prepare

gpu-check:
	@test -n "$(OUT)" || { echo "error: give the output folder: make gpu-check OUT=/tmp/gpu-check" >&2; exit 2; }
	PYTHON=$(PY) bash scripts/gpu_check.sh $(OUT)

# Refresh the lock from the venv: upgrade what you want in .venv (pip install -U ...), run make test, then this.
lock: install
	{ echo "# pip constraints: the versions make test passes with (Python 3.11, Linux x86_64). Refresh: make lock"; \
	  $(BIN)/pip freeze --exclude-editable; } > $(LOCK).tmp && mv $(LOCK).tmp $(LOCK)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) mlflow.db mlartifacts ray_results runs
