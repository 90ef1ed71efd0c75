# Set-up, run, tests and benchmarks.  Every target creates or reuses the
# virtual environment in .venv and installs the package (with the cffi
# iovec helper built) into it.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: all venv bytecode run test bench qemu-utils clean

all: test

$(STAMP): setup.cfg setup.py pyproject.toml util/iov_build.py util/iov_helper.c \
		util/coroutine_c.c util/thread_pool_c.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(STAMP)

# Bytecode for the tree, as pip writes it for an installed package: the
# editable install runs from the sources, and with PYTHONDONTWRITEBYTECODE
# set Python would compile every module again at each start.
bytecode: venv
	$(PY) -m compileall -q block util drivers

# The comparison tests run the real qemu-io and qemu-img from Debian.
qemu-utils:
	@if command -v qemu-io >/dev/null && command -v qemu-img >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-utils; \
	else \
		echo "qemu-io/qemu-img not found and cannot install them (needs root and apt-get):"; \
		echo "install Debian's qemu-utils; the comparison tests will be skipped outside CI."; \
	fi

run: bytecode
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" sh examples/demo_session.sh

test: venv qemu-utils
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: bytecode
	$(PY) -m tests.bench

clean:
	rm -rf $(VENV) build *.egg-info util/_iov_c.* .pytest_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +
