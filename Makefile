# embbench: `make bench` runs the main job, `make test` the tests. Both build .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/default.toml

.PHONY: help venv test unit integration lint format bench knobs smoke gate capacity capacity-cores report peers rust clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned exactly: PyPI's regular build (it brings NVIDIA's CUDA wheels, about
	# 5 GB of the 5.7 GB venv; 1.5 min from a warm mirror here). The pin keeps a looser spec
	# from ever pulling another version; pip's cache stays warm between runs.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## create the virtual environment (torch, the model, locust, ...)

test: $(STAMP) ## run all tests (unit, then integration with real servers and Locust)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q tests/unit
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q --durations=15 tests/integration

unit: $(STAMP) ## run the fast unit tests only
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q tests/unit

integration: $(STAMP) ## run the integration tests only (real servers, the real model, Locust)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q --durations=15 tests/integration

lint: $(STAMP) ## ruff (lint + format check) on embbench/ and tests/, mypy on embbench/
	$(BIN)/ruff check embbench tests
	$(BIN)/ruff format --check embbench tests
	$(BIN)/mypy embbench

format: $(STAMP) ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format embbench tests
	$(BIN)/ruff check --fix embbench tests

bench: $(STAMP) ## each way of serving (configs/default.toml), repeats until decided, then its report
	HF_HUB_OFFLINE=1 $(BIN)/embbench run --config $(CONFIG) --repeats auto; code=$$?; \
	  HF_HUB_OFFLINE=1 $(BIN)/embbench report; exit $$code

knobs: $(STAMP) ## what each knob of the batched server buys (configs/experiments/knobs.toml)
	HF_HUB_OFFLINE=1 $(BIN)/embbench run --config configs/experiments/knobs.toml --repeats auto; \
	  code=$$?; HF_HUB_OFFLINE=1 $(BIN)/embbench report; exit $$code

smoke: $(STAMP) ## the small CI matrix (configs/smoke.toml), then its report
	HF_HUB_OFFLINE=1 $(BIN)/embbench run --config configs/smoke.toml; code=$$?; \
	  HF_HUB_OFFLINE=1 $(BIN)/embbench report; exit $$code

gate: $(STAMP) ## the CI gate's run (configs/gate.toml): exit 3 when an assertion fails; RUN_ID=name
	HF_HUB_OFFLINE=1 $(BIN)/embbench run --config configs/gate.toml $(if $(RUN_ID),--run-id $(RUN_ID)) \
	  --junit results/gate-junit.xml

capacity: $(STAMP) ## rate each variant sustains at p99 <= 50 ms (configs/capacity.toml; make peers first)
	HF_HUB_OFFLINE=1 $(BIN)/embbench capacity --config configs/capacity.toml --slo-p99-ms 50; \
	  code=$$?; HF_HUB_OFFLINE=1 $(BIN)/embbench report; exit $$code

capacity-cores: $(STAMP) ## capacity on 1 and 2 cores, fastest and shared-mutex (configs/capacity-cores.toml)
	HF_HUB_OFFLINE=1 $(BIN)/embbench capacity --config configs/capacity-cores.toml \
	  --slo-p99-ms 50 --cores 1,2; code=$$?; HF_HUB_OFFLINE=1 $(BIN)/embbench report; exit $$code

report: $(STAMP) ## report on the newest run under results/
	HF_HUB_OFFLINE=1 $(BIN)/embbench report

rust: ## release build of the article's actix-web + candle server (rust/seed-server), cached
	bash scripts/build_rust.sh

peers: $(STAMP) ## install infinity-emb (.venv-infinity), Ray Serve and fastembed (into .venv)
	bash scripts/install_infinity.sh
	bash scripts/install_ray.sh
	bash scripts/install_fastembed.sh

clean: ## remove caches (keeps .venv and results/)
	rm -rf .mypy_cache .ruff_cache .pytest_cache
