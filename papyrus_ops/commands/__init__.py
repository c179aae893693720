"""One module per CLI command group; each exposes `register(app)` (see papyrus_ops/cli.py)."""

import importlib
import pkgutil


def register_all(app) -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{info.name}").register(app)
