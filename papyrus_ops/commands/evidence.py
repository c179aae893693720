"""`papyrus-ops evidence upload-pending`: finish uploads that failed earlier, exactly once."""

from __future__ import annotations

import typer

from papyrus_ops.runner import EnvOpt, prepare

GROUP = "evidence"  # papyrus-ops evidence upload-pending


def register(app) -> None:

    @app.command("upload-pending")
    def upload_pending_cmd(env: str = EnvOpt) -> None:
        """Upload every local bundle still marked pending; exit 1 if any remains pending."""
        settings = prepare(env)
        from artifacts.storage import upload_pending
        from ground import aws

        results = upload_pending(settings.evidence_root,
                                 lambda region=None: aws.client("s3", region or settings.region))
        for folder, status in results:
            typer.echo(f"{folder}: {status}")
        if not results:
            typer.echo("no pending evidence")
        raise typer.Exit(1 if any(s.startswith("failed") for _, s in results) else 0)
