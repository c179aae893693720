"""The papyrus-ops CLI, the one way tests run it: a real subprocess (`run_cli`, as CI and a person
run it) or in-process through typer's CliRunner (`invoke`: faster, same code path)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "papyrus-ops"  # the installed console script


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment (the session sandbox and Prefect API reach the CLI through
    it), never a developer's running sandbox, plus `extra`."""
    env = dict(os.environ)
    env.setdefault("PAPYRUS_SANDBOX_DIR", str(ROOT / ".no-sandbox-in-tests"))
    env.update(extra)
    return env


def run_cli(*args: object, timeout: float = 300, env: dict[str, str] | None = None,
            script: bool = False, capture_dir: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m papyrus_ops ...` (or, with `script`, the installed `papyrus-ops` console
    script; both through the session's warm interpreter, papyrus_ops.warm) in the repository
    root, output captured. `env` replaces `cli_env()` whole. With
    `capture_dir`, the command, exit code, stdout and stderr are also kept there as a file
    (`cli-*.txt`) for the canary sweep."""
    argv = [str(SCRIPT)] if script else [sys.executable, "-m", "papyrus_ops"]
    words = [str(a) for a in args]
    r = subprocess.run([*argv, *words], capture_output=True, text=True, timeout=timeout,
                       env=cli_env() if env is None else env, cwd=ROOT)
    if capture_dir is not None:
        name = f"cli-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:8]}.txt"
        (capture_dir / name).write_text(f"$ papyrus-ops {' '.join(words)}\n"
                                        f"--- exit {r.returncode}\n--- stdout\n{r.stdout}\n"
                                        f"--- stderr\n{r.stderr}\n")
    return r


def invoke(*args: object, catch_exceptions: bool = False):
    """The CLI in-process (typer's CliRunner); an unexpected exception propagates unless
    `catch_exceptions`."""
    from typer.testing import CliRunner

    from papyrus_ops.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=catch_exceptions)


def error_lines(stderr: str) -> list[str]:
    """The non-blank lines of what a command printed on stderr."""
    return [line for line in stderr.splitlines() if line.strip()]
