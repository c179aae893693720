"""What every benchmark shares: paths, the machine, statistics, child processes with their own
peak RSS, a Prefect API for the run, and the sandbox in this process.

Raw results go to `bench/out/results/<name>.json` (git-ignored); `bench.report` turns them into
`docs/benchmarks.md`. Scratch state (sandbox, PostgreSQL, evidence, Prefect home) lives under
`$TMPDIR/papyrus-bench/` and is removed at the start of each run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
RESULTS = OUT / "results"
# Scratch (sandbox, PostgreSQL, evidence, service copies) lives outside the repo: the evidence
# library refuses a root inside a Python package, and copies of service/ must not be importable
# from the checkout.
TMP = Path(os.environ.get("PAPYRUS_BENCH_TMP", Path(tempfile.gettempdir()) / "papyrus-bench"))
PY = sys.executable
PG_BIN = Path("/usr/lib/postgresql/15/bin")

TELEMETRY_OFF = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- statistics -------------------------------------------------------------------------------
def stats(values: Iterable[float | None]) -> dict:
    """median / min / max / n of the values that are not None."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"n": 0, "median": None, "min": None, "max": None, "values": []}
    return {"n": len(vals), "median": statistics.median(vals), "min": min(vals),
            "max": max(vals), "values": [round(v, 4) for v in vals]}


# -- results ------------------------------------------------------------------------------------
def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, default=str))
    return path


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


# -- the machine --------------------------------------------------------------------------------
def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def wait_for_quiet(threshold: float = 2.5, step: float = 60, max_wait: float = 900) -> dict:
    """Wait (in `step` s sleeps, up to `max_wait`) for the 1-min load to drop below `threshold`.
    Returns what was seen; the run goes ahead either way."""
    seen = [(utc_now(), loadavg())]
    waited = 0.0
    while seen[-1][1][0] > threshold and waited < max_wait:
        log(f"load average {seen[-1][1]} above {threshold}: waiting {step:.0f}s "
            f"({waited:.0f}/{max_wait:.0f}s)")
        time.sleep(step)
        waited += step
        seen.append((utc_now(), loadavg()))
    return {"threshold": threshold, "waited_seconds": waited, "checks": seen,
            "quiet": seen[-1][1][0] <= threshold}


def _cpu_busy(interval: float) -> float:
    """The machine's busy fraction (all cores, from /proc/stat) over `interval` seconds."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]  # idle + iowait
        return sum(v) - idle, sum(v)

    b0, t0 = sample()
    time.sleep(interval)
    b1, t1 = sample()
    return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


def settle(busy: float = 0.15, interval: float = 0.5, max_wait: float = 30) -> float:
    """Wait until the machine is quiet (below `busy` of its cores over `interval`), so one
    measured call does not run beside what the one before left behind (a temporary Prefect
    server shutting down, a server still writing the last run's events). Returns the seconds
    waited; after `max_wait` it goes ahead anyway."""
    t = time.monotonic()
    while _cpu_busy(interval) > busy and time.monotonic() - t < max_wait:
        pass
    return round(time.monotonic() - t, 2)


def _cmd_version(cmd: Sequence[str], pattern: str = r"(\d+(?:\.\d+)+\S*)") -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (r.stdout + r.stderr).strip()
    m = re.search(pattern, text)
    return m.group(1) if m else (text.splitlines()[0] if text else None)


def aws_cli() -> str:
    """The awscli v1 binary: the pyenv interpreter's own script when there is one (no shim
    start-up in the timings), else `aws` on PATH, else the one bench/setup.sh installed."""
    versions = Path("/root/.pyenv/versions")
    if versions.is_dir():
        for v in sorted(os.listdir(versions)):
            if (versions / v / "bin" / "aws").exists():
                return str(versions / v / "bin" / "aws")
    return shutil.which("aws") or str(OUT / "awscli" / "bin" / "aws")


def machine() -> dict:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "mem_total_gib": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "hostname": socket.gethostname()}


def versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("prefect", "boto3", "botocore", "moto", "flask", "gunicorn", "sqlalchemy",
                "psycopg2-binary", "werkzeug"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    out["awscli"] = _cmd_version([aws_cli(), "--version"], r"aws-cli/(\S+)")
    out["jq"] = _cmd_version(["jq", "--version"], r"jq-(\S+)")
    out["wrk"] = _cmd_version(["wrk", "--version"], r"wrk (\S+)")
    out["pgbench"] = _cmd_version([str(PG_BIN / "pgbench"), "--version"])
    out["postgres"] = _cmd_version([str(PG_BIN / "postgres"), "--version"])
    out["gzip"] = _cmd_version(["gzip", "--version"])
    out["git_commit"] = _cmd_version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                     r"(\w+)")
    return out


# -- child processes with their own peak RSS ------------------------------------------------------
@dataclass
class ChildResult:
    returncode: int
    seconds: float
    maxrss_mb: float
    user_s: float
    sys_s: float
    stdout: str = ""
    stderr: str = ""


def wait_rusage(proc: subprocess.Popen, timeout: float | None = None) -> tuple[int, object]:
    """wait4() the child: its exit status and its own rusage (ru_maxrss in KiB on Linux)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            code = os.waitstatus_to_exitcode(status)
            proc.returncode = code
            return code, ru
        if deadline is not None and time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL) if _own_group(proc) else proc.kill()
            deadline = None
        time.sleep(0.01)


def _own_group(proc: subprocess.Popen) -> bool:
    try:
        return os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        return False


TIME = "/usr/bin/time"


def timed(cmd: Sequence[str], report: Path) -> list[str]:
    """`cmd` under GNU time, which writes the child's own peak RSS (KiB) and CPU seconds to
    `report`. (wait4() on a child forked from this big process would report this process's
    RSS: Linux carries the pre-exec high-water mark into ru_maxrss.)"""
    return [TIME, "-f", "%M %U %S", "-o", str(report), *cmd]


def read_time_report(report: Path) -> tuple[float, float, float]:
    """(peak RSS MiB, user s, sys s) from a GNU time report (last line)."""
    text = report.read_text().strip().splitlines()
    report.unlink(missing_ok=True)
    kib, user, sys_ = text[-1].split()
    return int(kib) / 1024, float(user), float(sys_)


def run_child(cmd: Sequence[str], env: dict | None = None, timeout: float = 900,
              cwd: Path = ROOT, stdout_path: Path | None = None) -> ChildResult:
    """Run one command; wall time, exit code and the child's own peak RSS and CPU time."""
    import tempfile
    import threading

    fd, name = tempfile.mkstemp(prefix="time-", suffix=".txt", dir=TMP)
    os.close(fd)
    report = Path(name)
    out_f = open(stdout_path, "wb") if stdout_path else subprocess.PIPE  # noqa: SIM115
    t0 = time.monotonic()
    proc = subprocess.Popen(timed(cmd, report), env=env, cwd=cwd, stdout=out_f,
                            stderr=subprocess.PIPE, start_new_session=True)
    # Drain the pipes in threads so a chatty child never blocks on a full pipe.
    chunks: dict[str, bytes] = {"err": b"", "out": b""}

    def drain(key, stream):
        chunks[key] = stream.read()

    threads = [threading.Thread(target=drain, args=("err", proc.stderr), daemon=True)]
    if out_f is subprocess.PIPE:
        threads.append(threading.Thread(target=drain, args=("out", proc.stdout), daemon=True))
    for t in threads:
        t.start()
    code, _ = wait_rusage(proc, timeout)
    seconds = time.monotonic() - t0
    for t in threads:
        t.join(5)
    if stdout_path:
        out_f.close()
    try:
        rss, user, sys_ = read_time_report(report)
    except (OSError, ValueError, IndexError):
        rss = user = sys_ = float("nan")
    return ChildResult(code, seconds, rss, user, sys_, chunks["out"].decode(errors="replace"),
                       chunks["err"].decode(errors="replace"))


def fresh_shell_env(extra: dict | None = None) -> dict:
    """A new shell as a person or CI has it, for a fresh clone's `make`: `clean_env(extra)`
    without anything of the bench's sandbox, Prefect or venv."""
    return {k: v for k, v in clean_env(extra).items()
            if not k.startswith(("AWS_", "PAPYRUS_", "PREFECT_")) and k != "VIRTUAL_ENV"}


def clean_env(extra: dict | None = None, base: dict | None = None) -> dict:
    """The environment for children: `base` (default: this process's) without any real AWS
    identity, telemetry off, then `extra`."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith(("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN"))}
    env.update(TELEMETRY_OFF)
    env.update(extra or {})
    return env


# -- a Prefect API for the whole run --------------------------------------------------------------
class PrefectServer:
    """`prefect server start` on loopback with a private PREFECT_HOME, stopped by pid."""

    def __init__(self, home: Path):
        self.home = Path(home)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> PrefectServer:
        import urllib.request

        self.home.mkdir(parents=True, exist_ok=True)
        env = clean_env({"PREFECT_HOME": str(self.home), "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
                         "PREFECT_API_URL": self.url})
        logf = open(self.home / "server.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(Path(PY).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
             "--port", str(self.port), "--no-ui", "--no-services", "--analytics-off"],
            env=env, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=self.home)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prefect server exited ({self.proc.returncode}); see "
                                   f"{self.home / 'server.log'}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("prefect server did not answer /api/health in time")

    def env(self) -> dict[str, str]:
        return {"PREFECT_API_URL": self.url, "PREFECT_HOME": str(self.home / "client"),
                **TELEMETRY_OFF}

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None


# -- the sandbox, in this process -----------------------------------------------------------------
def start_sandbox(state_dir: Path, cloudtrail_events: int = 0):
    """The embedded default in this process (so its knobs are reachable); this process's
    environment points boto3 at it, and the env file is written for the CLI."""
    from sandbox.server import Sandbox

    shutil.rmtree(state_dir, ignore_errors=True)
    sb = Sandbox(state_dir, cloudtrail_events=cloudtrail_events).start()
    os.environ.update(sb.env())
    os.environ["PAPYRUS_SANDBOX_DIR"] = str(state_dir)
    sb.write_env_file()
    return sb


def wait_stable(sb, timeout: float = 90) -> dict:
    """The service has one COMPLETED deployment with every task running."""
    ecs = sb.client("ecs")
    s = sb.settings
    deadline = time.monotonic() + timeout
    while True:
        svc = ecs.describe_services(cluster=s.cluster, services=[s.service])["services"][0]
        deps = svc["deployments"]
        if (len(deps) == 1 and deps[0].get("rolloutState") == "COMPLETED"
                and svc["runningCount"] == svc["desiredCount"] and svc["pendingCount"] == 0):
            return svc
        if time.monotonic() > deadline:
            raise RuntimeError(f"service not stable after {timeout}s: "
                               f"{[(d['id'], d.get('rolloutState')) for d in deps]}")
        time.sleep(0.2)
