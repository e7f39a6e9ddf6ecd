# The README's two commands: `make demo` and `make test`. Each installs exactly the versions in uv.lock (into
# .venv, plus .venv-3.10 and .venv-3.13 for the type checks) and checks the installed tree against the lock.
# Nothing needs installing by hand: the first run puts the pinned uv into .tools (a venv of its own, so that the
# exact `uv sync` of .venv never removes it). uv uses this machine's Pythons and never downloads one.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
UV_STAMP := $(TOOLS)/.uv-$(UV_VERSION)
VENV := .venv
BIN := $(VENV)/bin
# The oldest and the newest Python claimed: `make test` runs mypy for both, `make test-pythons` pytest.
PYTHONS := 3.10 3.13

export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON_PREFERENCE := only-system
export UV_NO_PROGRESS := 1

# The interpreter behind $(PYTHON), resolved in the recipe (a pyenv shim becomes the real path).
MAIN_PY = "$$($(PYTHON) -c 'import sys; print(sys.executable)')"

# $(call sync,VENV,PYTHON,ARGS): install exactly uv.lock's versions for ARGS into VENV (creating it with PYTHON),
# then check that the installed tree matches the lock (fails on any missing, extra or different package).
define sync
	UV_PROJECT_ENVIRONMENT=$(1) $(UV) sync --locked --quiet --python $(2) $(3)
	UV_PROJECT_ENVIRONMENT=$(1) $(UV) sync --locked --check --quiet --python $(2) $(3) \
		|| { UV_PROJECT_ENVIRONMENT=$(1) $(UV) sync --locked --check --python $(2) $(3); exit 1; }
endef

SYNC_PYTHONS := $(PYTHONS:%=sync-%)
TYPECHECKS := $(PYTHONS:%=typecheck-%)
PYTESTS := $(PYTHONS:%=pytest-%)

.PHONY: demo test lint typecheck pytest wheel-smoke test-pythons test-latest lock bench bench-scaleout clean \
	sync-runtime sync-dev $(SYNC_PYTHONS) $(TYPECHECKS) $(PYTESTS)

$(UV_STAMP):
	rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	touch $@

sync-runtime: $(UV_STAMP)
	$(call sync,$(VENV),$(MAIN_PY),--inexact)

sync-dev: $(UV_STAMP)
	$(call sync,$(VENV),$(MAIN_PY),--extra dev)

$(SYNC_PYTHONS): sync-%: $(UV_STAMP)
	@scripts/find-python $* >/dev/null
	$(call sync,.venv-$*,"$$(scripts/find-python $*)",--extra dev)

demo: sync-runtime
	$(BIN)/azml demo

lint: sync-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

$(TYPECHECKS): typecheck-%: sync-%
	.venv-$*/bin/mypy --strict azml_client
	.venv-$*/bin/mypy --strict tests/typing_api.py

typecheck: $(TYPECHECKS)

pytest: sync-dev
	$(BIN)/python -m pytest -q

# Build the sdist and the wheel (from the sdist), install the wheel with the locked runtime dependencies into a
# clean venv, and run the smoke test from there.
wheel-smoke: $(UV_STAMP)
	UV=$(UV) PYTHON=$(MAIN_PY) scripts/wheel-smoke

test: lint typecheck wheel-smoke pytest

# The oldest and newest Python: the whole suite but the engine integrations (Spark and Ray, and the scale-out
# harness test that starts Spark: run by `make test` on python3) and the slow soak tests, so that CI stays well
# under 30 minutes.
$(PYTESTS): pytest-%: sync-%
	.venv-$*/bin/python -m pytest -q -m "not slow" --ignore=tests/spark --ignore=tests/ray \
		--ignore=tests/benchmarks/test_scaleout.py

test-pythons: $(PYTESTS)

# The suite against the newest release of every dependency, in a throwaway venv, without the lock.
test-latest: $(UV_STAMP)
	UV=$(UV) PYTHON=$(MAIN_PY) scripts/test-latest

lock: $(UV_STAMP)
	$(UV) lock --upgrade --python $(MAIN_PY)

bench: $(UV_STAMP)
	$(call sync,$(VENV),$(MAIN_PY),--extra dev --extra bench)
	$(BIN)/python -m benchmarks && $(BIN)/python -m benchmarks --pushback

# The scale-out benchmarks (issue 14): Spark and Ray on local clusters against the emulator, 20-25 minutes.
bench-scaleout: $(UV_STAMP)
	$(call sync,$(VENV),$(MAIN_PY),--extra dev --extra bench)
	$(BIN)/python -m benchmarks --scaleout

clean:
	rm -rf $(VENV) $(PYTHONS:%=.venv-%) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
