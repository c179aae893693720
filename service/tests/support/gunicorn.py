"""A real `gunicorn --config python:papyrus.gunicorn_conf papyrus.wsgi:app`, as the Dockerfile
runs it: its own port, its stdout/stderr kept in files for the tests to search."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

from support.canaries import TOKEN
from support.postgres import free_port

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


class Gunicorn:
    """A real `gunicorn --config python:papyrus.gunicorn_conf papyrus.wsgi:app`."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out_path, self.err_path = workdir / "gunicorn.out", workdir / "gunicorn.err"
        base = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL") if k in os.environ}
        full_env = {**base, "HOME": str(workdir), "PAPYRUS_WORKERS": "1",
                    "PAPYRUS_BIND": f"127.0.0.1:{self.port}", "PAPYRUS_DBCHECK_TOKEN": TOKEN,
                    **env}
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [GUNICORN, "--config", "python:papyrus.gunicorn_conf", "papyrus.wsgi:app"],
                env=full_env, cwd=workdir, stdout=out, stderr=err,
            )

    def wait_ready(self, timeout: float = 20) -> bool:
        """True once /healthz answers; False if the process exited first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with suppress(OSError):
                if self.get("/healthz")[0] == 200:
                    return True
            time.sleep(0.05)
        raise TimeoutError("gunicorn did not answer /healthz")

    def wait_exit(self, timeout: float = 20) -> int:
        return self.proc.wait(timeout=timeout)

    def request(self, path: str, method: str = "GET", headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def get(self, path: str, headers: dict | None = None):
        return self.request(path, "GET", headers)

    def json(self, path: str, headers: dict | None = None):
        status, body = self.get(path, headers)
        return status, json.loads(body)

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") + self.err_path.read_text(
            errors="replace"
        )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=20)

