# blockprune: `make demo` and `make test` install into .venv first when it is missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

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

lint: $(STAMP)  ## byte-compile everything (cheap syntax check)
	$(PY) -m compileall -q src tests

clean:  ## remove outputs and caches (keeps .venv)
	rm -rf outputs multirun .cache .pytest_cache
