"""The event stores by (account_id, region): `StoreRegistry` and the module's default one."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from sandbox.cloudtrail.events import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_REGION,
    StoredEvent,
    _normalize,
    event_region,
)
from sandbox.cloudtrail.store import EventStore


class StoreRegistry:
    """The stores by (account_id, region); a store is created empty on first use."""

    def __init__(self, *, max_rps: float | None = None, burst: float | None = None):
        self._lock = threading.Lock()
        self._stores: dict[tuple[str, str], EventStore] = {}
        self.max_rps = max_rps
        self.burst = burst

    def get(self, account_id: str = DEFAULT_ACCOUNT_ID, region: str = DEFAULT_REGION) -> EventStore:
        with self._lock:
            store = self._stores.get((account_id, region))
            if store is None:
                store = EventStore(account_id, region, max_rps=self.max_rps, burst=self.burst)
                self._stores[(account_id, region)] = store
            return store

    def add_by_region(self, events: Iterable[object], account_id: str = DEFAULT_ACCOUNT_ID,
                      default_region: str = DEFAULT_REGION) -> dict[str, int]:
        """Add each event to the store of the region it was recorded in (its `awsRegion`), as
        CloudTrail does: LookupEvents in one region never answers another region's events, and
        IAM's (a global service) are in us-east-1 only. Returns the count per region."""
        by_region: dict[str, list[StoredEvent]] = {}
        for e in events:
            rec = _normalize(e)
            by_region.setdefault(event_region(rec, default_region), []).append(rec)
        return {region: self.get(account_id, region).add_events(batch)
                for region, batch in sorted(by_region.items())}

    def set_rate_limit(self, max_rps: float | None, burst: float | None = None) -> None:
        """Set the rate for every store, existing and future (None: off)."""
        with self._lock:
            self.max_rps, self.burst = max_rps, burst
            stores = list(self._stores.values())
        for store in stores:
            store.set_rate_limit(max_rps, burst)

    def stores(self) -> dict[tuple[str, str], EventStore]:
        with self._lock:
            return dict(self._stores)

    def clear(self) -> None:
        with self._lock:
            self._stores.clear()


default_registry = StoreRegistry()


def get_store(
    account_id: str = DEFAULT_ACCOUNT_ID,
    region: str = DEFAULT_REGION,
    registry: StoreRegistry | None = None,
) -> EventStore:
    """Get or create the store for (account_id, region) in `registry` (default: the module's)."""
    return (registry or default_registry).get(account_id, region)
