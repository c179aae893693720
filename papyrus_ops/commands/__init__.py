"""One module per CLI command group; each exposes `register(app)` (see papyrus_ops/cli.py); a
module with `GROUP = "evidence"` registers under `papyrus-ops evidence`."""

import importlib
import pkgutil


def register_all(app, evidence_app) -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(evidence_app if getattr(module, "GROUP", None) == "evidence" else app)
