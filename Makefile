# Two commands do all the set-up on a fresh Debian machine with only python3 and root:
#   make test   (venv, gpool + requirements-dev.txt, OS packages for the test servers, the whole suite)
#   make demo   (the main job)
# Dependencies: the package's own (and its user extras) in pyproject.toml; development and test tools in
# requirements-dev.txt; the benchmark peers in requirements-bench.txt.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test unit integration faults soak demo bench lint cov dist os-deps clean

$(PY):
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3 -m venv failed: installing python3-venv"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; \
	  rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }

$(STAMP): $(PY) pyproject.toml requirements-dev.txt
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e . -r requirements-dev.txt
	@touch $@

# The test servers: a private mariadbd and redis-server are started by the fixtures; install them when missing.
os-deps:
	@missing=""; \
	command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing="$$missing mariadb-server"; \
	command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing="$$missing redis-server"; \
	galera=""; for f in /usr/lib/galera/libgalera_smm.so /usr/lib/galera-4/libgalera_smm.so \
	  /usr/lib64/galera-4/libgalera_smm.so /usr/lib/libgalera_smm.so; do [ -e "$$f" ] && galera=$$f; done; \
	[ -n "$$galera" ] || missing="$$missing galera-4"; \
	if [ -n "$$missing" ]; then \
	  echo "installing OS packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# Two processes: the core's unit tests run unpatched; integration and fault tests monkey-patch at import
# (gpool must work both ways, and a patched module would patch the whole pytest session).
test: $(STAMP) os-deps
	$(PY) -m pytest -q tests/unit
	$(PY) -m pytest -q tests/integration tests/faults

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

integration: $(STAMP) os-deps
	$(PY) -m pytest -q tests/integration

faults: $(STAMP) os-deps
	$(PY) -m pytest -q tests/faults

cov: $(STAMP)
	$(PY) -m pytest -q tests/unit --cov=gpool --cov-report=term-missing

soak: $(STAMP) os-deps
	GPOOL_SOAK_SECONDS=$${GPOOL_SOAK_SECONDS:-300} $(PY) -m pytest -q -s -m slow tests/faults

demo: $(STAMP) os-deps
	$(PY) examples/demo.py

bench: $(STAMP) os-deps
	$(PY) -m pip install -q -r requirements-bench.txt || true
	$(PY) benchmarks/run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy gpool

# An sdist and a wheel in dist/ (nothing is uploaded).
dist: $(STAMP)
	rm -rf dist
	$(PY) -m build

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .coverage htmlcov
