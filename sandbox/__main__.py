"""`python -m sandbox serve --state-dir DIR`: run the sandbox until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args()

    from sandbox.server import Sandbox

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sb = Sandbox(args.state_dir).start()
    try:
        sb.write_env_file()
        print(f"sandbox up: {sb.endpoint}", flush=True)
        while not stop.wait(1.0):
            sb.write_env_file()  # keeps the recorded child pids current for `down`
    finally:
        sb.stop()
        print("sandbox down", flush=True)


if __name__ == "__main__":
    main()
