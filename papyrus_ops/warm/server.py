"""The warm interpreter: the CLI imported once, a forked child per call (see `papyrus_ops.warm`).

    python -m papyrus_ops.warm.server <folder> <key> [<pid of the call that starts it>]

One process per key, single-threaded (a fork copies only the forking thread, so no other thread
may exist): a select loop over its socket, its calls' connections and SIGCHLD. A call sends its
argv, environment, cwd and umask with its stdin, stdout and stderr attached; the server forks,
answers `pid N`, and the child waits for the caller's `go` before it does anything (until then
the caller may still run the call itself). The child takes the caller's fds, folder and
environment, reloads Prefect's settings and logging from that environment, and runs the CLI.
The caller relays signals as `kill N` (to the child's process group, as a terminal would);
when the caller goes away, the child is killed, as it would die with a cold process. When the
child exits the server answers `exit N` (or `signal N`). Idle for the idle time: it removes
its socket and exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from pathlib import Path

from papyrus_ops import warm
from papyrus_ops.warm import prefect_reload

# What a call would import anyway; the botocore models of the services the flows call.
# The second line: what a flow run imports only when it runs (Flow.__call__ imports the
# visualization module and graphviz, the first anyio Event its asyncio backend, boto3's S3
# client its transfer methods, rich's first log line its emoji table, `run_flow` the resident
# server's modules): found by diffing `sys.modules` after `preload()` with the end of a
# `cloudtrail-archive` call — 70 modules, ~0.07 s of every call's CPU (docs/benchmarks.md §2).
PRELOAD = ("papyrus_ops.cli", "prefect.flow_engine", "prefect.task_engine", "prefect.artifacts",
           "prefect.task_runners", "prefect.events.clients", "prefect.client.orchestration",
           "prefect.utilities.visualization", "anyio._backends._asyncio", "boto3.s3.inject",
           "boto3.s3.transfer", "rich._emoji_codes", "encodings.idna", "stringprep",
           "typer._click.decorators", "papyrus_ops.prefect_local.resident")
# The longest a new server waits for the call that started it to end before it imports anyway.
AFTER_TIMEOUT = 120.0
SERVICES = ("ecs", "ec2", "s3", "secretsmanager", "kms", "sts", "ecr", "cloudtrail", "rds",
            "elbv2", "logs", "iam", "cloudwatch")


def preload() -> None:
    import importlib
    import pkgutil

    import flows

    for name in PRELOAD:
        importlib.import_module(name)
    for mod in pkgutil.iter_modules(flows.__path__):
        importlib.import_module(f"flows.{mod.name}")
    from ground.aws import botocore_session

    core = botocore_session()
    for service in SERVICES:  # models, endpoints and partitions into the shared loader
        core.create_client(service, region_name="us-east-1", aws_access_key_id="warm",
                           aws_secret_access_key="warm")  # noqa: S106 - no call is made
    from ground import prefect_tls

    prefect_tls.prime()  # the CA bundle read once, not by each call's first Prefect client
    prefect_reload.remember()
    # What the imports made stays as it is in every child: their collector never walks it, so
    # it does not dirty (copy on write) the pages every forked call shares with this process.
    gc.collect()
    gc.freeze()


# -- the child ---------------------------------------------------------------------------------
def _become_the_call(request: dict, fds: list[int], go: int, inherited: list[int]) -> None:
    """In the forked child: wait for `go`, take over the caller's fds, folder and environment,
    and run the CLI; never returns."""
    code = 1
    try:
        for fd in inherited:
            with contextlib.suppress(OSError):
                os.close(fd)
        signal.set_wakeup_fd(-1)
        # The dispositions a cold call would start with: the caller's ignored signals stay
        # ignored (the server's own, inherited from whoever started it, do not count).
        ignored = set(request.get("ignored", ()))
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as every Python process has it
        for sig in warm.RELAYED:
            signal.signal(sig, signal.SIG_IGN if sig in ignored else
                          signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
        os.setpgid(0, 0)
        if os.read(go, 1) != b"g":
            os._exit(0)  # the caller went away (or ran the call itself) before it began
        os.close(go)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.umask(int(request["umask"]))
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = list(request["argv"])
        sys.stdout.reconfigure(line_buffering=os.isatty(1))
        prefect_reload.reload()
        from papyrus_ops import cli

        cli.main()  # exits: quick_exit's handler ends the process after the atexit handlers
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - what a cold interpreter would print
        traceback.print_exc()
    # What the interpreter's own exit does, in its order: join the threads still running
    # (threading's shutdown, as a cold process waits for them), then the atexit handlers
    # (Prefect's log and event drains, then quick_exit's os._exit with the CLI's code).
    import atexit

    with contextlib.suppress(BaseException):
        threading._shutdown()
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


# -- the server --------------------------------------------------------------------------------
class Server:
    def __init__(self, where: Path, key: str) -> None:
        self.where, self.key = where, key
        self.idle = warm.idle_seconds()
        self.sel = selectors.DefaultSelector()
        self.children: dict[int, dict] = {}  # pid -> {"conn", "go", "buf"}
        self.last = time.monotonic()
        self.stopping = False

    def own_fds(self) -> list[int]:
        fds = [self.listener.fileno(), self.lock, self.wake_r, self.wake_w, self.sel.fileno()]
        for c in self.children.values():
            fds += [c["conn"].fileno(), c["go"]]
        return [fd for fd in fds if fd >= 0]

    def bind(self) -> bool:
        self.lock = os.open(self.where / f"{self.key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # another server for this key is up (two first calls at once)
        path = warm.socket_path(self.where, self.key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with warm.short_path(tmp) as address:
            self.listener.bind(address)
        os.chmod(tmp, 0o600)
        self.listener.listen(16)
        os.replace(tmp, path)  # a stale socket of a dead server is replaced in one step
        self.inode = path.stat().st_ino
        (self.where / f"{self.key}.pid").write_text(json.dumps(
            {"pid": os.getpid(), "start": _start_time(os.getpid())}))
        return True

    def serve(self) -> None:
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self.stopping:
                if not self.children and time.monotonic() - self.last >= self.idle:
                    return
                wait = None if self.children else self.idle - (time.monotonic() - self.last)
                for sk, _ in self.sel.select(wait):
                    if sk.data == "accept":
                        self._accept()
                    elif sk.data == "wake":
                        with contextlib.suppress(BlockingIOError):
                            os.read(self.wake_r, 512)
                    else:
                        self._from_caller(sk.data)
                self._reap()
        finally:
            self._cleanup()

    def _stop(self, *_args) -> None:
        self.stopping = True

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        try:
            conn.settimeout(10)
            request, fds = _read_request(conn)
        except (OSError, ValueError) as e:
            _log(f"bad request: {type(e).__name__}")
            conn.close()
            return
        go_r, go_w = os.pipe()
        inherited = [*self.own_fds(), conn.fileno(), go_w]
        sys.stdout.flush()
        sys.stderr.flush()  # or the child would write what this process had buffered again
        pid = os.fork()
        if pid == 0:
            _become_the_call(request, fds, go_r, inherited)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also here: a `kill` may come before the child's own setpgid
        os.close(go_r)
        for fd in fds:
            os.close(fd)
        # The command's name only: the rest of argv may be anything a user typed.
        command = next((a for a in request["argv"][1:] if not a.startswith("-")), "")[:40]
        self.children[pid] = {"conn": conn, "go": go_w, "buf": bytearray(), "command": command}
        try:
            conn.sendall(f"pid {pid}\n".encode())
        except OSError:
            self._caller_gone(pid)
        conn.setblocking(False)
        self.sel.register(conn, selectors.EVENT_READ, pid)

    def _from_caller(self, pid: int) -> None:
        child = self.children.get(pid)
        if child is None:
            return
        try:
            data = child["conn"].recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._caller_gone(pid)
            return
        child["buf"] += data
        while b"\n" in child["buf"]:
            line, _, rest = bytes(child["buf"]).partition(b"\n")
            child["buf"][:] = rest
            word, _, arg = line.decode(errors="replace").partition(" ")
            if word == "go" and child["go"] >= 0:
                os.write(child["go"], b"g")
                os.close(child["go"])
                child["go"] = -1
            elif word == "kill" and arg.isdigit():
                with contextlib.suppress(OSError):
                    os.killpg(pid, int(arg))

    def _caller_gone(self, pid: int) -> None:
        """The caller exited or was killed: so is its call (a cold call dies with its process)."""
        child = self.children[pid]
        if child["go"] >= 0:
            os.close(child["go"])  # never started: it exits by itself
            child["go"] = -1
        else:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(child["conn"])
        child["conn"].close()

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            self.last = time.monotonic()
            answer = (f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                      else f"exit {os.waitstatus_to_exitcode(status)}")
            _log(f"call {pid} ({child['command']}): {answer}")
            if child["go"] >= 0:
                os.close(child["go"])
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(child["conn"])
            with contextlib.suppress(OSError):
                child["conn"].setblocking(True)
                child["conn"].sendall(f"{answer}\n".encode())
            child["conn"].close()

    def _cleanup(self) -> None:
        path = warm.socket_path(self.where, self.key)
        with contextlib.suppress(OSError):
            if path.stat().st_ino == self.inode:
                path.unlink()
        with contextlib.suppress(OSError):
            (self.where / f"{self.key}.pid").unlink()
        self.listener.close()


def _read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    first, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    if len(fds) != 3 or len(first) < 4:
        for fd in fds:
            os.close(fd)
        raise ValueError("no request")
    (size,) = struct.unpack("!I", first[:4])
    data = bytearray(first[4:])
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            for fd in fds:
                os.close(fd)
            raise ValueError("request cut short")
        data += chunk
    return json.loads(bytes(data)), fds


def _log(line: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} warm: {line}", file=sys.stderr, flush=True)


def _start_time(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2:].split()[19])


def stop(where: Path) -> list[int]:
    """Stop every warm interpreter in `where` (a running call's child finishes on its own)."""
    stopped = []
    for pidfile in where.glob("*.pid"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            info = json.loads(pidfile.read_text())
            pid = int(info["pid"])
            if _start_time(pid) == info["start"]:
                os.kill(pid, signal.SIGTERM)
                stopped.append(pid)
    return stopped


def wait_for_exit(pid: int, timeout: float) -> None:
    """Until process `pid` has ended, at most `timeout` seconds."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        with selectors.DefaultSelector() as sel:  # a pidfd turns readable when the process ends
            sel.register(fd, selectors.EVENT_READ)
            sel.select(timeout)
    finally:
        os.close(fd)


def main(where: Path, key: str, after: int | None = None) -> None:
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = dict(os.environ)  # the key is of the caller's environment, before the imports' defaults
    if warm.key(env) != key:
        return
    if after:
        # The call that started us runs cold meanwhile, often while it starts the resident
        # Prefect server: on two cores our imports would slow it down. Calls until then run
        # cold too (no socket yet), as they would without us.
        wait_for_exit(after, AFTER_TIMEOUT)
    server = Server(where, key)
    if not server.bind():
        return
    try:
        preload()
        if threading.active_count() != 1:  # a fork would copy a lock another thread holds
            _log(f"not serving: threads after the imports: {threading.enumerate()}")
            return
        if warm.key(env) != key:  # the code changed while it was imported
            _log("not serving: the code changed during the imports")
            return
        _log(f"serving {key} (pid {os.getpid()})")
        server.serve()
        _log("stopped" if server.stopping else "idle: stopped")
    finally:
        server._cleanup()


if __name__ == "__main__":  # pragma: no cover - the server process
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
