"""A stand-in for CloudTrail `LookupEvents` inside moto's server (moto 5.2.5 answers it with 500).

Three pieces:

* :class:`EventStore` holds the events of one (account, region), sorted by (EventTime, EventId)
  in parallel lists, so a page is found by bisection: its cost does not depend on how much
  history is stored. Pages come newest first, like the real API. Tokens carry the position as
  the (EventTime, EventId) of the last event returned plus a fingerprint of the query, so they
  stay valid while newer events are appended. An optional token bucket enforces the API's
  rate (2 requests/s per account and region), and :meth:`EventStore.throttle_next` injects
  throttling for the next N calls.
* :func:`install` / :func:`uninstall` patch ``moto.cloudtrail.responses.CloudTrailResponse`` so
  ``LookupEvents`` is answered from a :class:`StoreRegistry` (moto reads the response class on
  every request, so the patch is seen by a server that is already running).
* :func:`generate_history` builds a realistic, deterministic synthetic history in which an exact
  share of the events concern Papyrus resources and the rest never mention "papyrus".

Modules: `events` (StoredEvent, LookupEventsError), `tokens` (NextToken), `store`
(EventStore), `registry` (StoreRegistry), `moto_patch` (install/uninstall), `history`
(generate_history; built from `history_blocks` and `history_kinds`). The names below are the
package's public API.
"""

from sandbox.cloudtrail.events import (
    ATTRIBUTE_KEYS,
    DEFAULT_ACCOUNT_ID,
    DEFAULT_REGION,
    GLOBAL_SERVICE_REGION,
    LookupEventsError,
    StoredEvent,
    event_region,
)
from sandbox.cloudtrail.history import PAPYRUS_NAMES, generate_history
from sandbox.cloudtrail.moto_patch import install, installed_registry, uninstall
from sandbox.cloudtrail.registry import StoreRegistry, default_registry, get_store
from sandbox.cloudtrail.store import EventStore

__all__ = [
    "ATTRIBUTE_KEYS", "DEFAULT_ACCOUNT_ID", "DEFAULT_REGION", "GLOBAL_SERVICE_REGION",
    "PAPYRUS_NAMES", "EventStore", "event_region",
    "LookupEventsError", "StoreRegistry", "StoredEvent", "default_registry", "generate_history",
    "get_store", "install", "installed_registry", "uninstall",
]
