# The two entry points the README opens with. Each does its own setup (venv, install) and is
# safe to run twice: the venv is rebuilt only when the dependency files change.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean browser

# uv installs the same pinned set as pip would, about ten times faster (a fresh cache: 5 s
# against pip's 60 s here; docs/benchmarks.md "cold start"). NO_UV=1 uses pip.
UV_VERSION := 0.13.9

# Bytecode is compiled at install, for the dependencies and for this checkout's own packages:
# pip does it by default, uv only when asked. Without it, and with PYTHONDONTWRITEBYTECODE set
# (this machine's shells, CI images, our Dockerfile), Python never writes a .pyc, so every CLI
# call compiled Prefect, boto3 and the flows from source again — about 3 s of each call's
# Prefect tax on 2 busy cores (docs/benchmarks.md §6; `import prefect` 2.7 s of CPU instead
# of ~0.9 s, §2 Findings). A .pyc older than its source is ignored,
# so an edited file is only compiled in memory as before. compileall also covers site-packages:
# uv compiles only what it installs, and a venv made before this recipe must gain its .pyc too
# (where they are already there it only compares timestamps). The Makefile is a prerequisite: a
# change to this recipe changes what an existing venv should hold.
PKGS := ground artifacts sandbox tasks flows papyrus_ops bench service/papyrus

$(STAMP): pyproject.toml service/pyproject.toml constraints.txt Makefile
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
ifeq ($(NO_UV),)
	test -x $(VENV)/bin/uv || $(VENV)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install -q --compile-bytecode --python $(VENV)/bin/python \
		-c constraints.txt -C editable_mode=compat -e ./service -e '.[dev]'
else
	$(VENV)/bin/pip install -q --disable-pip-version-check -c constraints.txt \
		--config-settings editable_mode=compat -e ./service -e '.[dev]'
endif
	$(VENV)/bin/python -m compileall -q -j0 $(PKGS) >/dev/null
	@# Failures ignored here, as pip and uv do: some packages ship files for newer Pythons only.
	$(VENV)/bin/python -m compileall -q -j0 \
		"$$($(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null || true
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/papyrus-ops demo

# Four workers, each a whole session with its own sandbox and Prefect server; a test file (and
# tests/e2e, tests/reliability whole) stays on one worker (tests/support/workers.py). Four on 2
# cores, because much of the suite waits (ECS rollouts, health checks, a browser): 5:59 (median
# of three, 2026-12-04; two workers took 14:29 and five 7:19 when last measured) on a fresh
# clone (docs/benchmarks.md §8). 0: one process.
TEST_WORKERS ?= 4

test: $(STAMP) browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

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
