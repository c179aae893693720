"""CloudTrail archive: LookupEvents, streamed into gzip as it arrives, resumable.

One concern per module (each usable alone, each tested alone):

* `window` — the half-open window to archive and its slices (pure: parsing, checks, times).
* `pacing` — `RateLimiter` / `shared_limiter`: one limiter per region in the process
  (LookupEvents allows 2 requests/s per account and region).
* `paging` — `lookup_pages`: the pages of one [start, end] query, throttling absorbed (never a
  run failure); `prefetch_pages`: the next page in flight while this one is written; which
  errors are transient.
* `records` — `event_record` / `event_line`: one API event as one archived JSON line;
  `BoundaryDedupe`: EventId dedupe in bounded memory.
* `papyrus_filter` — which events are Papyrus-related (one pure rule, docs/cloudtrail.md).
* `store` — the work folder (checkpoint, gzip members, lock) and the local archive state.
* `checkpoint` — a run's checkpoint: new, resumable or not (task `prepare_archive`).
* `progress` — the progress log line and artifact.
* `slices` — `archive_slice_core`: one slice streamed into the two gzip files and checkpointed
  every N pages (task `archive_slice`).
* `names` — task `resolve_papyrus_names`: the filter's identifiers for an environment.
* `publish` — task `publish_archive`: the evidence bundle, uploaded.
* `state` — tasks `read_archive_state` / `write_archive_state`: the incremental state and its
  tail (the ids archived in the overlap, so a re-read never archives an event twice).
* `regions` — `plan_passes`: the configured region, plus us-east-1 per global event source.
"""

LOGGER = "papyrus.cloudtrail"  # the logger used outside a Prefect run
