"""Prefect's settings and logging for each call of the warm interpreter (`papyrus_ops.warm`).

Prefect read its settings, and set up logging from them, when the server imported it — from
the server's environment and folder. A forked call reads them again from its own (`reload`).

Logging is configured anew for every call (its handlers take the call's stderr and
terminal), but from the configuration the server loaded (`remember`) when that was loaded
from the same inputs: loading it renders every setting into the file's template, 50 ms of
each call (docs/benchmarks.md §2). Settings compare field by field; any difference (another
folder's prefect.toml, a profile edited since) loads it again, as Prefect would.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

# (inputs, configuration) the server loaded, see `remember`.
_REMEMBERED: list[tuple[dict, dict]] = []


def _logging_file() -> Path:
    """The file `prefect.logging.configuration.setup_logging` loads."""
    from prefect.logging.configuration import DEFAULT_LOGGING_SETTINGS_PATH
    from prefect.settings import PREFECT_LOGGING_SETTINGS_PATH

    path = PREFECT_LOGGING_SETTINGS_PATH.value()
    return path if path.exists() else DEFAULT_LOGGING_SETTINGS_PATH


def _inputs() -> dict:
    """What `load_logging_config` reads: every setting (it substitutes them all into the
    file), the file, and the PREFECT_LOGGING_* variables."""
    from prefect.settings import get_current_settings

    path = _logging_file()
    st = path.stat()
    return {"settings": get_current_settings(), "file": (str(path), st.st_mtime_ns, st.st_size),
            "env": {k: v for k, v in os.environ.items() if k.startswith("PREFECT_LOGGING_")}}


def remember() -> None:
    """In the server, before it forks: the settings as a call reads them (its environment has
    the CLI's defaults, which Prefect may have been imported before) and the logging
    configuration loaded from them."""
    import prefect.context
    from prefect.logging import configuration

    prefect.context.refresh_global_settings_context()
    _REMEMBERED[:] = [(_inputs(), configuration.load_logging_config(_logging_file()))]


def reload() -> None:
    """In the forked call, once its environment and folder are the caller's."""
    from papyrus_ops import cli

    cli.apply_env_defaults()
    import prefect.context
    from prefect.logging import configuration

    prefect.context.refresh_global_settings_context()
    configuration.PROCESS_LOGGING_CONFIG.clear()
    if not (_REMEMBERED and _REMEMBERED[0][0] == _inputs()):
        configuration.setup_logging(incremental=False)
        return
    loaded = copy.deepcopy(_REMEMBERED[0][1])
    own = configuration.load_logging_config
    configuration.load_logging_config = lambda _path: loaded
    try:
        configuration.setup_logging(incremental=False)
    finally:
        configuration.load_logging_config = own
