# Two entry points do all set-up on a fresh Debian/Ubuntu machine:
#   make demo   the virtual board running the firmware on the shipped demo recording
#   make test   the whole test suite (the virtual board stands in for a real one)
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/voicenode demo

test: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH bash scripts/lint.sh

clean:
	rm -rf $(VENV) build *.egg-info
