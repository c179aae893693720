"""`papyrus-ops` through a warm interpreter: each call forks one that has Prefect imported.

Importing Prefect, boto3 and the flows is most of a CLI call's Prefect tax — about 1.2 s of
CPU on this kind of machine, every call (docs/benchmarks.md §6). So a call first asks this
checkout's warm interpreter (`papyrus_ops.warm.server`, started in the background by an
earlier call) to run it: that process imported everything once and forks a child per call,
which takes this call's stdin, stdout and stderr, working directory, umask, argv and whole
environment, and runs the CLI exactly as a cold process would. This process relays signals
to the child and exits with its exit status. Rails' Spring and Android's zygote work so.

When there is none (the first call, or the code changed), the call runs here, cold, as it
always did, and starts one for the calls after it. A warm interpreter serves only calls that
would import the same code in the same way: its socket's name is a hash of the interpreter,
`sys.path`, every source file of this checkout (mtime and size), the installed packages, and
the environment minus the variables read only at run time (`RUN_TIME_PREFIXES`), so an
edited file or another PREFECT_HOME gets a fresh one. It stops itself after
`PAPYRUS_CLI_WARM_IDLE_SECONDS` (default 600) without a call. `PAPYRUS_CLI_WARM=0` turns it
off. Its folder: `PAPYRUS_CLI_WARM_DIR`, default `<checkout>/.prefect/cli-warm` (0700: the
requests carry the caller's environment, credentials included).

This module is the client: standard library only, because what it saves is imports.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ground", "artifacts", "tasks", "flows", "papyrus_ops", "sandbox")
IDLE_SECONDS = 600.0

# Read when a command runs, never when a module is imported: a call whose environment differs
# from the warm interpreter's only in these can use it. Everything else is part of the key.
RUN_TIME_PREFIXES = ("AWS_", "PAPYRUS_", "PYTEST_")
RUN_TIME_NAMES = {"_", "PWD", "OLDPWD", "SHLVL", "COLUMNS", "LINES"}
# The exceptions: our modules that read these at import (tests/test_warm_cli.py checks that the
# list holds every module-level os.environ read in PACKAGES).
IMPORT_TIME = {"PAPYRUS_DEPLOYMENTS_DIR", "PAPYRUS_AWS_RETRY_MODE", "PAPYRUS_AWS_MAX_ATTEMPTS",
               "PAPYRUS_PREFECT_DIR", "PAPYRUS_PG_BIN", "PAPYRUS_SANDBOX_DIR",
               "PAPYRUS_CLI_WARM_DIR", "PAPYRUS_CLI_WARM_IDLE_SECONDS"}
RELAYED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
           signal.SIGUSR2)
SOCKET_PATH_MAX = 100  # AF_UNIX addresses are at most 107 bytes on Linux (`short_path`)


def enabled(env: dict[str, str] | None = None) -> bool:
    return (env if env is not None else os.environ).get("PAPYRUS_CLI_WARM", "1") != "0"


def folder(env: dict[str, str] | None = None) -> Path:
    env = env if env is not None else os.environ
    return Path(env.get("PAPYRUS_CLI_WARM_DIR") or ROOT / ".prefect" / "cli-warm")


def idle_seconds(env: dict[str, str] | None = None) -> float:
    try:
        return max(1.0, float((env if env is not None else os.environ)
                              .get("PAPYRUS_CLI_WARM_IDLE_SECONDS", IDLE_SECONDS)))
    except ValueError:
        return IDLE_SECONDS


def keyed_env(env: dict[str, str]) -> dict[str, str]:
    """The part of `env` that can change what importing the CLI does."""
    return {k: v for k, v in env.items()
            if k in IMPORT_TIME or not (k in RUN_TIME_NAMES or k.startswith(RUN_TIME_PREFIXES))}


def _code_stamps() -> list:
    stamps = []
    for top in PACKAGES:
        for base, dirs, files in os.walk(ROOT / top):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    st = os.stat(os.path.join(base, name))
                    stamps.append((base[len(str(ROOT)):], name, st.st_mtime_ns, st.st_size))
    return stamps


def key(env: dict[str, str] | None = None) -> str:
    """What a warm interpreter must share with a call to serve it (see the module's text)."""
    env = env if env is not None else dict(os.environ)
    paths = []
    for p in sys.path[1:]:  # [0] is the script's folder or the cwd: the same packages either way
        with contextlib.suppress(OSError):
            paths.append((p, os.stat(p or ".").st_mtime_ns))  # a package (un)installed
    blob = json.dumps([sys.executable, sys.version, paths, _code_stamps(),
                       sorted(keyed_env(env).items())])
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


# -- the protocol: the request, with the three standard fds, then lines both ways -----------------
def send_request(sock: socket.socket, request: dict) -> None:
    data = json.dumps(request).encode()
    head = struct.pack("!I", len(data))
    socket.send_fds(sock, [head + data[:4000]], [0, 1, 2])
    sock.sendall(data[4000:])


def read_line(sock: socket.socket, buf: bytearray) -> str | None:
    """The next line from `sock` (None at EOF); `buf` keeps what came after it."""
    while b"\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line.decode()


@contextlib.contextmanager
def short_path(path: Path):
    """`path` as bind() and connect() can take it: an AF_UNIX address is at most 107 bytes, and
    a checkout or tmp folder can be deeper than that. A longer one goes through the folder's
    fd (/proc/self/fd/N/name), which names the same file."""
    if len(os.fsencode(path)) <= SOCKET_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def _connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with short_path(path) as address:
            sock.connect(address)
    except OSError:
        sock.close()
        return None
    return sock


def _exit_as(status: str) -> None:
    """Leave as the child did: its exit code, or killed by its signal."""
    kind, _, number = status.partition(" ")
    if kind == "signal":
        sig = int(number)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(int(number))


def run_warm(sock: socket.socket) -> bool:
    """Have the warm interpreter run this call. False when it did not start it (nothing ran:
    the caller runs the call itself); otherwise this process exits as the child did."""
    buf = bytearray()
    # A signal this process ignores (nohup's SIGHUP, SIGINT for a shell's background job) is
    # ignored by the call too, as a cold process inherits it; the others are relayed.
    ignored = [int(sig) for sig in RELAYED if signal.getsignal(sig) == signal.SIG_IGN]
    try:
        sock.settimeout(10)
        send_request(sock, {"argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd(),
                            "umask": _umask(), "ignored": ignored})
        started = read_line(sock, buf)
    except OSError:
        return False
    if not started or not started.startswith("pid "):
        return False
    try:  # the child waits for this: until it is sent, nothing has run and the caller may
        sock.sendall(b"go\n")  # run the call itself; from here on the call is the child's
    except OSError:
        return False
    sock.settimeout(None)

    def relay(sig, _frame):
        with contextlib.suppress(OSError):
            sock.sendall(f"kill {sig}\n".encode())

    for sig in RELAYED:
        if sig not in ignored:
            signal.signal(sig, relay)
    try:
        status = read_line(sock, buf)
    except OSError:
        status = None
    if status is None:
        sys.stderr.write("papyrus-ops: error: the warm interpreter went away during the call "
                         f"(its log: {folder() / 'server.log'})\n")
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    _exit_as(status)
    return True  # not reached


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def socket_path(where: Path, k: str) -> Path:
    return where / f"{k}.sock"


def start_server(where: Path, k: str) -> None:
    """Start a warm interpreter for key `k` in the background (it takes `<k>.lock`, so two
    calls starting one at once leave one). It waits for this call to end before it imports, so
    the first call does not share the cores with it (see `server.main`)."""
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = open(where / "server.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        subprocess.Popen([sys.executable, "-m", "papyrus_ops.warm.server", str(where), k,
                          str(os.getpid())],
                         cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True)
    finally:
        log.close()


def main() -> None:  # pragma: no cover - the console entry; tests run it as a process
    if enabled():
        where = folder()
        k = key()
        sock = _connect(socket_path(where, k))
        if sock is not None:
            run_warm(sock)
            sock.close()
        else:
            with contextlib.suppress(OSError):
                start_server(where, k)
    from papyrus_ops.cli import main as cold

    cold()
