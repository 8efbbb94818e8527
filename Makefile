# Beacon: `make run` starts the city locally, `make test` runs every test, `make bench` the
# benchmarks. Each bootstraps .venv from nothing with the pinned set in requirements.lock.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
READY := $(VENV)/.ready-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)
B ?=

.PHONY: run test bench venv lock clean

venv: $(READY)

$(READY): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@rm -f $(VENV)/.ready-* && touch $@

run: $(READY)
	$(BIN)/python -m deploy.local $(ARGS)

test: $(READY)
	@bash deploy/ensure-docker-compose.sh
	@bash deploy/ensure-chromium.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(READY)
	$(BIN)/python -m bench $(B)

# Re-pin after changing dependencies in pyproject.toml.
lock: $(READY)
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --extra test --strip-extras --no-header --allow-unsafe \
		--no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) data .pytest_cache
