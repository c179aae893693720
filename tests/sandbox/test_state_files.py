"""The sandbox daemon's state files are replaced whole: `sandbox serve` rewrites `env` and
`sandbox.json` every second while `up`, `down` and `status` read them, and a reader that caught
a half-written sandbox.json took the sandbox for stopped (seen once in a suite run: a second
`up` started a second sandbox beside the first, and `down` then left it running)."""

from __future__ import annotations

import json
import threading

from ground.envfile import read_env_file, write_env_file
from sandbox import daemon


def test_a_reader_never_sees_a_partial_state_file(tmp_path):
    big = {f"KEY_{i}": "x" * 200 for i in range(200)}  # large enough for a torn write to show
    info = {"pid": 1, "endpoint": "http://127.0.0.1:1", "children": list(range(2000))}
    write_env_file(tmp_path / "env", big)
    (tmp_path / "sandbox.json").write_text(json.dumps(info))
    stop, seen = threading.Event(), {"reads": 0, "bad": 0}

    def writer():
        from ground.envfile import write_atomically

        while not stop.is_set():
            write_env_file(tmp_path / "env", big)
            write_atomically(tmp_path / "sandbox.json", json.dumps(info))

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(2000):
            state = daemon.read_state(tmp_path)
            env = read_env_file(tmp_path / "env")
            seen["reads"] += 1
            if state is None or state["children"] != info["children"] or env != big:
                seen["bad"] += 1
    finally:
        stop.set()
        t.join()
    assert seen == {"reads": 2000, "bad": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env", "sandbox.json"]
