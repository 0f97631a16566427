# Two commands on a fresh machine: `make report` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/default.yaml
WORKERS ?= 2
STAMP := $(VENV)/.installed

.PHONY: system install kernels report prepare nightly lint test bench mutation data luigid-start luigid-stop clean-venv

# The Debian packages the goal needs, checked first (scripts/system_packages.sh): as root, apt-get installs
# what is missing; otherwise one message names it and make stops before anything is installed or run.
# `install` needs a Python that can make a venv; report, prepare, nightly and bench also want the dataset;
# test needs everything the suite runs (the dataset, Chromium, iproute2, util-linux, g++, curl).
NEEDS = install
report prepare nightly bench data: NEEDS = report
luigid-start: NEEDS = luigid
test: NEEDS = test
system:
	@PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/system_packages.sh $(NEEDS)

$(STAMP): pyproject.toml | system
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP) kernels

# The fused M-SVAG/SVAG op (tasks/training/kernels) for the installed TensorFlow, in build/kernels/tf-<version>/:
# quiet when up to date; without g++ a warning, and training keeps the pure-TF path (same weights, slower).
kernels: $(STAMP)
	@$(BIN)/python -m tasks.training.kernels build

# The dataset: the Debian package when we can install it, else FetchFile falls back to the upstream URL.
data: system

report: install
	$(BIN)/luigi --module pipeline FullReport --config $(CONFIG) --workers $(WORKERS)
	@$(BIN)/python -m pipeline.where report --config $(CONFIG)

prepare: install
	$(BIN)/luigi --module pipeline PrepareData

nightly: install
	$(BIN)/luigi --module pipeline NightlyReport --config $(CONFIG) --workers $(WORKERS)

# The central scheduler on 127.0.0.1:$(PORT); point workers at it with LUIGI_CONFIG_PATH=luigid.cfg.
PORT ?= 8082
luigid-start: install
	LUIGID=$(BIN)/luigid scripts/luigid.sh start $(PORT)

luigid-stop:
	scripts/luigid.sh stop

# Lint, format and the layering contracts first (seconds), then the suite.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q --no-skips -n 2 --dist loadfile

bench: install
	$(BIN)/python benchmarks/data_load.py

# Mutation testing of tasks/core/storage.py, tasks/core/quarantine.py, tasks/training/checkpoints.py, tasks/core/runfolder.py and runtables.py ([tool.mutmut] in pyproject.toml),
# not in CI: about 45 minutes with two children. `$(BIN)/mutmut results` lists the survivors, `mutmut show <name>` one.
mutation: install
	$(BIN)/python -m pip install --quiet 'mutmut>=3.8,<4'
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/mutmut run --max-children $(WORKERS)
	$(BIN)/mutmut results

clean-venv:
	rm -rf $(VENV)
