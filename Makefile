# Tandem's verbs. Works on a fresh machine with only Python 3.11 and pip: uv is installed into
# .tools/ when missing, Debian packages the tests need are installed with apt when missing.
SHELL := /bin/bash
PYTHON ?= python3.11
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --frozen --no-sync
APT_PACKAGES := chromium coturn
# The call-audio benchmark's material (speech) and the Speex peer it builds from source.
BENCH_APT_PACKAGES := espeak-ng codec2-examples libspeexdsp-dev swig
PYTEST_ARGS ?=

.PHONY: up demo test fuzz lint proto bench sync apt clean

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet 'uv>=0.9,<1'

.venv/.synced: uv.lock pyproject.toml $(wildcard services/*/pyproject.toml operators/*/pyproject.toml tools/*/pyproject.toml) | $(UV)
	$(UV) sync --frozen --all-packages
	touch $@

sync: .venv/.synced

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$$( [ $$(id -u) -eq 0 ] || echo sudo ) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$( [ $$(id -u) -eq 0 ] || echo sudo ) apt-get install -y -qq $$missing >/dev/null; \
	fi

up: sync
	$(RUN) python -m tandem.devstack up $(ARGS)

demo: sync
	$(RUN) python -m tandem.devstack demo $(if $(URL),--url $(URL))

test: sync apt
	$(RUN) pytest -n auto --dist loadgroup tests/unit tests/integration tests/e2e $(PYTEST_ARGS)
	$(MAKE) lint

# The protocol fuzzer at length (make test runs it briefly): FUZZ_EXAMPLES frames sequences.
FUZZ_EXAMPLES ?= 5000
fuzz: sync apt
	TANDEM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(RUN) pytest tests/e2e/test_protocol_fuzz.py -p no:xdist --timeout=7200

lint: sync
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy -p tandem.common -p tandem.matchmaking -p tandem.signaling -p tandem.media -p tandem.orders -p tandem.autoscaler -p tandem.devstack
	$(RUN) mypy tests
	$(RUN) lint-imports

proto: sync
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(RUN) python -m grpc_tools.protoc -I proto \
		--python_out=services/common/src --mypy_out=services/common/src proto/tandem/v1/*.proto

bench: sync
	$(MAKE) --no-print-directory apt APT_PACKAGES="$(APT_PACKAGES) $(BENCH_APT_PACKAGES)"
	$(UV) sync --frozen --all-packages --group bench
	$(RUN) pytest tests/benchmarks -s -p no:xdist --timeout=3600 $(PYTEST_ARGS)

clean:
	rm -rf .venv .tools .run .mypy_cache .ruff_cache .pytest_cache
