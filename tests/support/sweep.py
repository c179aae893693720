"""The canary sweep: everything the session produced, searched for the session sandbox's canaries
(its DB password and /dbcheck token, tests/support/canaries.py):

* every file under the evidence root (PAPYRUS_EVIDENCE_ROOT), hidden ones too, gzip unpacked;
* every Prefect log line, artifact, flow run and task run (state messages, parameters) read back
  through the API, and the Prefect server's own database file as a backstop;
* the captured stdout/stderr of every test and CLI subprocess kept in the capture folder.

tests/reliability/conftest.py runs it when the session's fixtures are torn down (after every
test, whatever the order) and fails the run on any hit.
"""

from __future__ import annotations

import gzip
import json
import os
import uuid
from pathlib import Path

PAGE = 200


def read_all_logs() -> list:
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    out, offset = [], 0
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_logs(limit=PAGE, offset=offset)
            out += page
            offset += len(page)
            if len(page) < PAGE:
                return out


def _paged(read) -> list:
    out, offset = [], 0
    while True:
        page = read(offset)
        out += page
        offset += len(page)
        if len(page) < PAGE:
            return out


def file_texts(root: Path):
    """(path, bytes) of every file under root; gzip members unpacked too."""
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        yield p, data
        if data[:2] == b"\x1f\x8b":
            yield Path(f"{p}!gunzip"), gzip.decompress(data)


def sweep(sb, secrets: tuple[str, ...], capture_dir: Path, *, full: bool) -> dict:
    """Search everything for `secrets`; returns {"seen": counts, "hits": [where...]} and keeps it
    as canary-sweep-*.json beside the capture folder. With `full` (the whole reliability matrix
    and the README's main job ran in this session) it also asserts that it searched plenty, so
    a sweep that silently read nothing cannot pass."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    needles = [s.encode() for s in secrets]
    hits: list[str] = []
    seen: dict[str, int] = {}

    def search(where: str, data: bytes | str) -> None:
        blob = data.encode("utf-8", "replace") if isinstance(data, str) else data
        hits.extend(f"{where}: {n.decode()[:14]}..." for n in needles if n in blob)

    # 1. Evidence: every file under the evidence root (and the sandbox's copy of the setting).
    roots = {Path(os.environ["PAPYRUS_EVIDENCE_ROOT"]), Path(sb.settings.evidence_root)}
    seen["evidence files"] = 0
    for root in roots:
        for path, data in file_texts(root):
            seen["evidence files"] += 1
            search(str(path), data)

    # 2. Prefect, through the API: logs, artifacts, flow runs, task runs.
    logs = read_all_logs()
    seen["prefect logs"] = len(logs)
    for lg in logs:
        search(f"log {lg.flow_run_id}/{lg.task_run_id}", f"{lg.name} {lg.message}")
    with get_client(sync_client=True) as client:
        artifacts = _paged(lambda o: client.read_artifacts(limit=PAGE, offset=o))
        flow_runs = _paged(lambda o: client.read_flow_runs(limit=PAGE, offset=o))
        task_runs = _paged(lambda o: client.read_task_runs(limit=PAGE, offset=o))
    seen.update({"prefect artifacts": len(artifacts), "flow runs": len(flow_runs),
                 "task runs": len(task_runs)})
    for a in artifacts:
        search(f"artifact {a.key or a.id}", f"{a.key} {a.description} "
               f"{json.dumps(a.data, default=str)} {json.dumps(a.metadata_, default=str)}")
    for run in [*flow_runs, *task_runs]:
        state = run.state
        search(f"{type(run).__name__} {run.name} ({run.id})",
               f"{run.name} {state.name if state else ''} {state.message if state else ''} "
               f"{json.dumps(getattr(run, 'parameters', {}), default=str)}")
    failed = [r for r in flow_runs if r.state and r.state.is_failed()]

    # 3. The Prefect server's database file itself, as a backstop for anything stored.
    url = PREFECT_SERVER_DATABASE_CONNECTION_URL.value() or ""
    db = Path(url.split("///", 1)[-1]) if url.startswith("sqlite") else None
    if db and db.is_file():
        for p in (db, Path(f"{db}-wal")):
            if p.is_file():
                search(str(p), p.read_bytes())
                seen["prefect db bytes"] = seen.get("prefect db bytes", 0) + p.stat().st_size

    # 4. What every test and CLI subprocess of the capture folder printed.
    captures = sorted(capture_dir.glob("*.txt"))
    seen["captures"] = len(captures)
    seen["cli captures"] = len([p for p in captures if p.name.startswith("cli-")])
    for p in captures:
        search(str(p), p.read_bytes())

    report = {"full": full, "seen": seen, "hits": hits}
    (capture_dir.parent / f"canary-sweep-{uuid.uuid4().hex[:6]}.json").write_text(
        json.dumps(report, indent=2))
    if full:
        assert seen["evidence files"] > 50, seen  # the matrix and the demo wrote plenty
        assert len(logs) > 200 and artifacts and len(flow_runs) >= 20, seen
        assert failed, "the matrix ends runs Failed: their state messages must be searched too"
        assert seen["cli captures"] >= 20, seen
    return report
