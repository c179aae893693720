"""The two images, checked without Docker (none on these machines): what each build context
holds after its .dockerignore, what each Dockerfile copies out of it, and the pins.

The matcher follows Docker's .dockerignore rules (moby/patternmatcher, as documented in
"Dockerfile reference → .dockerignore file"): patterns are relative to the context root, `*`
and `?` stay within one path segment, `**` spans any number of segments, a pattern that
matches a directory excludes everything under it, `!` re-includes, and the last matching
pattern wins.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOW_RUN_HOME = "/opt/papyrus-ops"  # prefect.yaml's prd pull step


def _regex(pattern: str) -> re.Pattern:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def read_dockerignore(path: Path) -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negate, _regex(pattern)))
    return rules


def in_context(rel: str, rules) -> bool:
    """Whether the file at `rel` (context-relative, '/'-separated) is sent to the builder."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for negate, rx in rules:
        if any(rx.fullmatch(p) for p in prefixes):
            excluded = not negate
    return not excluded


def context_files(root: Path) -> set[str]:
    rules = read_dockerignore(root / ".dockerignore")
    reincluded = [rx.pattern for negate, rx in rules if negate]
    found = set()
    for dirpath, dirs, files in os.walk(root):
        # An excluded directory no `!` pattern reaches into holds nothing sent (.venv, .git).
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        sub = {d: d if rel_dir == "." else f"{rel_dir}/{d}" for d in dirs}
        dirs[:] = [d for d in dirs if in_context(sub[d], rules) or any(
            p.startswith(re.escape(sub[d])) for p in reincluded)]
        for name in files:
            rel = Path(dirpath, name).relative_to(root).as_posix()
            if in_context(rel, rules):
                found.add(rel)
    return found


def dockerfile(path: Path) -> list[tuple[str, list[str]]]:
    """(instruction, arguments) per instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    steps = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            steps.append((word.upper(), shlex.split(rest) if word.upper() != "RUN" else [rest]))
    return steps


def copied(steps, files: set[str]) -> dict[str, set[str]]:
    """COPY source -> the context files it copies (a source copying nothing is an error in
    Docker: `COPY failed: no source files were specified`)."""
    out = {}
    for word, args in steps:
        if word != "COPY":
            continue
        for src in [a for a in args[:-1] if not a.startswith("--")]:
            src = src.rstrip("/")
            out[src] = {f for f in files if f == src or f.startswith(src + "/")}
    return out


NEVER = (".venv/", ".git/", ".sandbox/", ".prefect/", "docs/evidence/", "bench/out/", "tests/",
         "service/tests/")


@pytest.mark.parametrize("rel", [
    ".sandbox/postgres/data/server.key", ".sandbox/env", ".venv/bin/python", ".git/config",
    ".prefect/prefect.json", "docs/evidence/deploy/x/manifest.json", "bench/out/run.json",
    "tests/conftest.py", "ground/__pycache__/aws.cpython-311.pyc", "papyrus_ops.egg-info/PKG-INFO",
])
def test_flow_run_context_leaves_local_state_out(rel):
    assert not in_context(rel, read_dockerignore(ROOT / ".dockerignore")), rel


def test_flow_run_image_copies_the_code_to_the_pull_steps_path_and_nothing_local():
    steps = dockerfile(ROOT / "Dockerfile")
    files = context_files(ROOT)
    by_source = copied(steps, files)
    empty = [src for src, got in by_source.items() if not got]
    assert not empty, f"COPY sources with nothing in the context: {empty}"
    image = set().union(*by_source.values())
    assert not [f for f in image if f.startswith(NEVER) or f.endswith((".key", ".pem"))]
    for needed in ("flows/deploy.py", "flows/cloudtrail_archive.py", "ground/settings.py",
                   "tasks/ecs_pool.py", "papyrus_ops/cli.py", "deployments/prd/config.toml",
                   "deployments/prd/ecs-pool.json", "deployments/prd/iam/flow-run.policy.json",
                   "service/papyrus/sql/init.sql", "constraints.txt", "prefect.yaml"):
        assert needed in image, needed
    assert ("WORKDIR", [FLOW_RUN_HOME]) in steps
    run = " ".join(a[0] for w, a in steps if w == "RUN")
    assert "-c constraints.txt" in run  # every dependency pinned


def test_service_image_copies_the_package_and_its_pins_only():
    root = ROOT / "service"
    files = context_files(root)
    assert "papyrus/app.py" in files or any(f.startswith("papyrus/") for f in files)
    assert "constraints.txt" in files and "pyproject.toml" in files
    assert not [f for f in files if f.startswith(("tests/", ".pytest_cache/"))
                or "__pycache__" in f or ".egg-info" in f], files
    run = " ".join(a[0] for w, a in dockerfile(root / "Dockerfile") if w == "RUN")
    assert "-c /tmp/papyrus-src/constraints.txt" in run


@pytest.mark.parametrize("path", ["Dockerfile", "service/Dockerfile"])
def test_base_images_are_pinned_by_digest(path):
    froms = [a[0] for w, a in dockerfile(ROOT / path) if w == "FROM"]
    assert froms and all(re.fullmatch(r"[\w./:-]+@sha256:[0-9a-f]{64}", f) for f in froms), froms


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name.lower())] = version.strip()
    return pins


def test_service_pins_are_the_versions_the_suite_tested():
    service, repo = _pins(ROOT / "service/constraints.txt"), _pins(ROOT / "constraints.txt")
    assert {"flask", "gunicorn", "sqlalchemy", "psycopg2-binary"} <= set(service)
    assert {n: v for n, v in service.items() if repo.get(n) != v} == {}


# -- the RDS CA bundle (prd: sslmode=verify-full) ---------------------------------------------
FETCH = "service/tls/fetch-rds-ca-bundle.py"
BUNDLE = "/etc/ssl/rds/global-bundle.pem"


@pytest.mark.parametrize(("path", "src"), [("Dockerfile", "service/tls/"),
                                           ("service/Dockerfile", "tls/")])
def test_both_images_fetch_the_pinned_bundle_to_prds_ssl_root_cert_before_dropping_root(
        path, src):
    from ground.settings import load_env

    steps = dockerfile(ROOT / path)
    assert ("COPY", [src, "/tmp/tls/"]) in steps  # noqa: S108 - the build's scratch, removed
    runs = [i for i, (w, a) in enumerate(steps)
            if w == "RUN" and "fetch-rds-ca-bundle.py /tmp/tls/rds-global-bundle.sha256" in a[0]]
    assert runs and BUNDLE in steps[runs[0]][1][0]
    user_at = next(i for i, (w, _) in enumerate(steps) if w == "USER")
    assert runs[0] < user_at  # /etc/ssl is root's
    assert load_env("prd").db_ssl_root_cert == BUNDLE
    context = ROOT if path == "Dockerfile" else ROOT / "service"
    assert {f"{src}fetch-rds-ca-bundle.py", f"{src}rds-global-bundle.sha256"} <= \
        context_files(context)


def _fetch(tmp_path, pin: str, url: str):
    import subprocess
    import sys

    pin_file = tmp_path / "pin.sha256"
    pin_file.write_text(f"# comment\n{pin}\n")
    dest = tmp_path / "ssl" / "bundle.pem"
    r = subprocess.run([sys.executable, str(ROOT / FETCH), str(pin_file), str(dest), url],
                       capture_output=True, text=True, timeout=60)
    return r, dest


def test_the_bundle_is_refused_unless_its_sha256_is_the_pinned_one(tmp_path):
    import hashlib
    import threading
    from http.server import HTTPServer, SimpleHTTPRequestHandler

    served = tmp_path / "www"
    served.mkdir()
    body = b"-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n"
    (served / "global-bundle.pem").write_bytes(body)

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/global-bundle.pem"
    try:
        r, dest = _fetch(tmp_path, "UNPINNED", url)
        assert r.returncode == 1 and "no SHA-256 pinned" in r.stderr and not dest.exists()
        r, dest = _fetch(tmp_path, "0" * 64, url)
        assert r.returncode == 1 and "is not the pinned" in r.stderr and not dest.exists()
        r, dest = _fetch(tmp_path, hashlib.sha256(body).hexdigest(), url)
        assert r.returncode == 0, r.stderr
        assert dest.read_bytes() == body
    finally:
        server.shutdown()
        server.server_close()
