# The two commands of the README:  `make replay`  and  `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install replay test lint

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints-cpu.txt scripts/install.sh
	VENV=$(VENV) bash scripts/install.sh
	touch $@

replay: install
	$(BIN)/streamsim replay --scenario weekend-shift

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest
