"""The CLI's exit without the interpreter's teardown, once the answer is out.

Imported first by `papyrus_ops.cli`, so its atexit handler is registered before any other and
runs after all of them (atexit is last in, first out): Prefect's log and event drains, the
temporary server's stop and logging's shutdown have all run by then. What is left is CPython
freeing every module and object — 1.3 s after a flow run on 2 cores (measured with a wrapper
timing the last atexit handler against the process exit) that only makes the caller wait.
Only `exit_with(code)` arms it: imported as a library (tests, the flows), nothing changes.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys

_CODE: list[int] = []


def _exit_now() -> None:
    if not _CODE:
        return
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(_CODE[0])


atexit.register(_exit_now)


def exit_with(code: object) -> None:
    """sys.exit(code), skipping the teardown after the atexit handlers."""
    code = code if isinstance(code, int) else (0 if code is None else 1)
    _CODE.append(code)
    sys.exit(code)
