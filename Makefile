# daskscore: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test install lint bench clean chromium

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed-test

demo: install
	$(PY) examples/mnist/tutorial.py

test: install tests/node_modules/.installed chromium
	$(PY) -m pytest -q -ra

# Azurite (the Azure Storage emulator) for the Azure tests, pinned in tests/package.json
tests/node_modules/.installed: tests/package.json tests/package-lock.json
	npm ci --prefix tests --no-audit --no-fund
	touch $@

# headless Chromium for the dashboard page test (tests/cluster/test_cluster_dashboard.py);
# installed only when missing; a failed install fails here (and the test fails
# without it: it never skips)
chromium:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }
	@test -x /usr/bin/chromium || { echo "make chromium: /usr/bin/chromium is still missing" >&2; exit 1; }

lint: install
	$(VENV)/bin/ruff check daskscore tests

bench: install
	$(PIP) install --quiet -e '.[bench]'
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo-output
