# edge-detector: every target sets up what it needs first and is safe to repeat.
VENV ?= .venv
PY := $(VENV)/bin/python
export EDGE_ASSETS ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/edge-detector/assets

.PHONY: setup demo test lint bench clean

setup:
	tools/setup.sh

demo: setup
	$(PY) tools/demo.py

lint: setup
	$(VENV)/bin/ruff check edge tests tools
	$(VENV)/bin/mypy
	$(VENV)/bin/vermin --no-tips --target=3.8 --violations --eval-annotations --feature union-types edge
	$(PY) tools/gen_config_docs.py --check
	tools/check_unit.sh

test: lint
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: setup
	$(PY) tools/bench.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
