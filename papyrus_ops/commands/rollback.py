"""`papyrus-ops rollback`: back to the previous PRIMARY (or `--to` a revision), with a true verdict.

Exit 0 the service runs the target and answers /healthz, 1 it does not, 2 bad input (no previous
PRIMARY recorded, an unknown revision, another family): one line on stderr, nothing changed.
"""

from __future__ import annotations

import typer

from papyrus_ops.runner import EnvOpt, JsonOpt, answer, evidence_line, fail, prepare, run_flow


def register(app) -> None:
    @app.command("rollback")
    def rollback_cmd(
        env: str = EnvOpt,
        to: str = typer.Option(None, "--to", help="Revision number, family:revision, or ARN "
                               "(default: the PRIMARY before the last deploy)."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Roll the service back to a known-good task definition and judge the result."""
        settings = prepare(env, as_json, flow="rollback")
        # Deferred: these import Prefect. The target is resolved (read-only) before the flow,
        # so bad input is one line on stderr, not a failed flow run's log.
        from flows.rollback import rollback
        from ground import aws
        from ground.retry import BadInput
        from tasks.rollout import describe_service, primary, resolve_target

        ecs = aws.client("ecs", settings.region)
        try:
            running = primary(describe_service(ecs, settings))["taskDefinition"]
            resolve_target(ecs, aws.client("s3", settings.region), settings, to, running)
        except (BadInput, ValueError) as e:
            fail(str(e), as_json=as_json, flow="rollback", env=env)

        res = run_flow(rollback, env=env, to=to)
        answer(res, as_json, human=lambda r: typer.echo(evidence_line(r)))
