"""`papyrus-ops cloudtrail-archive`: the CloudTrail archive flow for people, CI and cron.

Exit codes: 0 archived; 1 the run failed (an interrupted run resumes on the next call); 2 bad
input (one line on stderr, nothing written). `--json` prints `ground.result`'s dict (bad input
too); counts, window and files are under `data`, the bundle under `evidence`.
"""

from __future__ import annotations

import functools
from typing import Any

import typer

from papyrus_ops.runner import EnvOpt, JsonOpt, answer, prepare, run_flow
from papyrus_ops.runner import fail as refuse

FLOW = "cloudtrail_archive"


def register(app: typer.Typer) -> None:

    @app.command("cloudtrail-archive")
    def cloudtrail_archive_cmd(
        env: str = EnvOpt,
        days: str | None = typer.Option(
            None, "--days", help="Archive the last N days (1-90; default 90)."),
        since: str | None = typer.Option(
            None, "--since", help="Window start, ISO-8601 UTC (e.g. 2025-09-10T00:00:00Z)."),
        until: str | None = typer.Option(
            None, "--until", help="Window end (exclusive), ISO-8601 UTC; default now - 15 min."),
        incremental: bool = typer.Option(
            False, "--incremental", help="Start where the last archive ended."),
        max_rps: str | None = typer.Option(
            None, "--max-rps", help="LookupEvents requests per second (default 2)."),
        extra_name: list[str] | None = typer.Option(
            None, "--extra-name", help="One more Papyrus identifier for the filter (repeatable)."),
        no_resume: bool = typer.Option(
            False, "--no-resume", help="Discard an interrupted run instead of resuming it."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Archive CloudTrail events (NDJSON, gzip) plus a Papyrus-only file, as evidence."""
        from tasks.cloudtrail.window import ArchiveInputError, resolve_window

        fail = functools.partial(refuse, as_json=as_json, flow=FLOW, env=env)
        # Validate everything the flow would refuse before touching anything. Numbers are
        # parsed here (not by Click) so that every bad value is one line and exit 2.
        n_days = _number(days, "--days", int, fail)
        rps = _number(max_rps, "--max-rps", float, fail)
        if rps is not None and not rps > 0:
            fail("--max-rps must be a positive number")
        try:
            resolve_window(n_days, since, until, incremental=incremental)
        except ArchiveInputError as e:
            fail(f"--{str(e)}" if str(e).split(":")[0] in ("days", "since", "until") else str(e))
        prepare(env, as_json, FLOW)
        from flows.cloudtrail_archive import cloudtrail_archive

        res = run_flow(cloudtrail_archive, env=env, days=n_days, since=since, until=until,
                       incremental=incremental, max_rps=rps, resume=not no_resume,
                       extra_names=extra_name or None)
        answer(res, as_json, human=_print_human)


def _number(raw: str | None, flag: str, kind: type, fail) -> Any:
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError:
        fail(f"{flag}: {raw!r} is not {'an integer' if kind is int else 'a number'}")


def _print_human(res: dict[str, Any]) -> None:
    data, ev = res.get("data") or {}, res.get("evidence") or {}
    if res.get("verdict") != "success":
        return  # the closing line says why
    if data.get("skipped"):
        typer.echo(f"cloudtrail-archive: {data['skipped']} ({data['window']['since']})")
        return
    where = ev.get("s3_uri") or ev.get("folder")
    pending = " (upload pending)" if ev.get("upload_pending") else ""
    typer.echo(
        f"cloudtrail-archive: {data['events']} events, {data['papyrus_events']} Papyrus, "
        f"window {data['window']['since']} .. {data['window']['until']} -> {where}{pending}")
