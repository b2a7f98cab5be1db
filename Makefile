# blockprune: `make demo` and `make test` install into .venv first when it is missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=
PRESET ?= table1
STUDY  ?=

.PHONY: help install test test-all demo table1 report bench lint clean

help:  ## list targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install blockprune (CPU torch unless a CUDA torch is present)

test: $(STAMP)  ## fast tests (the default suite, under ~15 minutes on 2 cores)
	$(PY) -m pytest $(ARGS)

test-all: $(STAMP)  ## every test, slow ones too
	$(PY) -m pytest -m "" $(ARGS)

demo: $(STAMP)  ## fine-tune e5-small-mr on MahaNews SHC on this CPU (~15 minutes)
	$(PY) train.py experiment=demo $(ARGS)

table1: $(STAMP)  ## the Table I study (PRESET=table1_cpu | table1_gpu | table1 for the paper's GPU setting)
	$(PY) -m blockprune.cli table1 --preset $(PRESET) $(if $(STUDY),--out $(STUDY)) $(ARGS)

report: $(STAMP)  ## table + plot from finished study folders: make report STUDY=outputs/table1/<stamp>
	$(PY) -m blockprune.cli report $(STUDY)

bench: $(STAMP)  ## benchmark a study's baseline against its compacted models: make bench STUDY=<study folder>
	$(PY) -m blockprune.cli bench $(STUDY)/baseline $(sort $(wildcard $(STUDY)/pruned/[0-9]*)) \
		--batch-sizes 1 32 --seq-lens 0 128 --out $(STUDY) $(ARGS)

lint: $(STAMP)  ## ruff (lint rules and format check, pyproject [tool.ruff]) and the import layering (.importlinter)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/lint-imports

clean:  ## remove outputs and caches (keeps .venv)
	rm -rf outputs multirun .cache .pytest_cache
