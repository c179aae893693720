# The two entry points the README opens with. Each does its own setup (venv, install) and is
# safe to run twice: the venv is rebuilt only when the dependency files change.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean browser

# uv installs the same pinned set as pip would, about ten times faster (a fresh cache: 5 s
# against pip's 60 s here; docs/benchmarks.md "cold start"). NO_UV=1 uses pip.
# --compile-bytecode: uv, unlike pip, writes no .pyc by default, and with
# PYTHONDONTWRITEBYTECODE=1 (the images', and this machine's, environment) Python never writes
# them either, so every process compiled Prefect, botocore, pydantic… from source again
# (`import prefect` 2.7 s of CPU instead of ~0.9 s; docs/benchmarks.md §2 Findings).
UV_VERSION := 0.13.9

$(STAMP): pyproject.toml service/pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
ifeq ($(NO_UV),)
	test -x $(VENV)/bin/uv || $(VENV)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install -q --python $(VENV)/bin/python -c constraints.txt \
		--compile-bytecode -C editable_mode=compat -e ./service -e '.[dev]'
else
	$(VENV)/bin/pip install -q --disable-pip-version-check -c constraints.txt \
		--config-settings editable_mode=compat -e ./service -e '.[dev]'
endif
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/papyrus-ops demo

test: $(STAMP) browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

# Debian's Chromium for the Prefect UI test (it skips, saying why, where none can be had).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
		>/dev/null; } || echo "chromium not installed: the browser test will skip"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(VENV)/bin/python -m bench

clean:
	rm -rf $(VENV) .sandbox
