"""One way to extend moto: replace attributes of its classes while the sandbox runs, and put
every one back exactly as it was (own attribute restored, inherited one removed again)."""

from __future__ import annotations

from typing import Any


class Patches:
    """`Patches((Owner, "name", replacement), ...)`; `original(Owner, "name")` is what the
    replacement calls on to (valid while installed). install/uninstall are idempotent."""

    def __init__(self, *targets: tuple[type, str, Any]) -> None:
        self._targets = targets
        self._saved: dict[tuple[type, str], tuple[bool, Any, Any]] = {}

    def install(self) -> None:
        if self._saved:
            return
        for owner, name, new in self._targets:
            own = name in owner.__dict__
            self._saved[(owner, name)] = (own, owner.__dict__.get(name), getattr(owner, name, None))
            setattr(owner, name, new)

    def uninstall(self) -> None:
        for (owner, name), (own, raw, _) in self._saved.items():
            if own:
                setattr(owner, name, raw)
            else:
                delattr(owner, name)
        self._saved.clear()

    def original(self, owner: type, name: str) -> Any:
        return self._saved[(owner, name)][2]
