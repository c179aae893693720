"""`papyrus-ops evidence upload-pending`: finish uploads that failed earlier, exactly once.

Exit 0 when nothing is left pending, 1 when an upload failed again (its marker stays), 2 bad
input. `--json` prints `ground.result`'s dict; `data.bundles` lists each folder and its status.
"""

from __future__ import annotations

import time

import typer

from papyrus_ops.runner import EnvOpt, JsonOpt, answer, prepare

GROUP = "evidence"  # papyrus-ops evidence upload-pending
FLOW = "evidence_upload_pending"


def _human(res: dict) -> None:
    bundles = (res.get("data") or {}).get("bundles") or []
    for b in bundles:
        typer.echo(f"{b['folder']}: {b['status']}")
    if not bundles:
        typer.echo("no pending evidence")


def register(app) -> None:

    @app.command("upload-pending")
    def upload_pending_cmd(env: str = EnvOpt, as_json: bool = JsonOpt) -> None:
        """Upload every local bundle still marked pending; exit 1 if any remains pending."""
        started = time.time()
        settings = prepare(env, as_json, FLOW)
        from artifacts.storage import upload_pending
        from ground import aws
        from ground.result import FAILED, SUCCESS, result

        done = upload_pending(settings.evidence_root,
                              lambda region=None: aws.client("s3", region or settings.region))
        bundles = [{"folder": str(folder), "status": status} for folder, status in done]
        counts = {kind: sum(b["status"].startswith(kind) for b in bundles)
                  for kind in ("uploaded", "failed", "skipped")}
        reason = (", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
                  or "no pending evidence")
        failures = [b["status"] for b in bundles if b["status"].startswith("failed")]
        res = result(FLOW, env, FAILED if failures else SUCCESS, reason,
                     error=failures[0].removeprefix("failed: ") if failures else None,
                     started=started, data={"bundles": bundles, **counts})
        answer(res, as_json, human=_human)
