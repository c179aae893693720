"""`papyrus-ops cloudtrail-archive`: the CloudTrail archive flow for people, CI and cron.

Exit codes: 0 archived; 1 the run failed (an interrupted run resumes on the next call); 2 bad
input (one line on stderr, nothing written).
"""

from __future__ import annotations

from typing import Any

import typer


def register(app: typer.Typer) -> None:
    from papyrus_ops.cli import EnvOpt, fail, finish, prepare

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
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Archive CloudTrail events (NDJSON, gzip) plus a Papyrus-only file, as evidence."""
        from tasks.cloudtrail.window import ArchiveInputError, resolve_window

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
        prepare(env)
        from flows.cloudtrail_archive import cloudtrail_archive

        kwargs: dict[str, Any] = {"env": env, "days": n_days, "since": since, "until": until,
                                  "incremental": incremental, "max_rps": rps,
                                  "resume": not no_resume, "extra_names": extra_name or None}
        try:
            result = cloudtrail_archive(**kwargs)
        except ArchiveInputError as e:
            fail(str(e))
        except Exception as e:
            fail(f"cloudtrail-archive failed: {type(e).__name__}: {e}", 1)
        if not as_json:
            _print_human(result)
        finish(result, as_json)


def _number(raw: str | None, flag: str, kind: type, fail) -> Any:
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError:
        fail(f"{flag}: {raw!r} is not {'an integer' if kind is int else 'a number'}")


def _print_human(result: dict[str, Any]) -> None:
    if result.get("skipped"):
        typer.echo(f"cloudtrail-archive: {result['skipped']} ({result['window']['since']})")
        return
    where = result.get("s3_uri") or result.get("folder")
    pending = " (upload pending)" if result.get("upload_pending") else ""
    typer.echo(
        f"cloudtrail-archive: {result['events']} events, {result['papyrus_events']} Papyrus, "
        f"window {result['window']['since']} .. {result['window']['until']} -> {where}{pending}")
