"""`papyrus-ops diff`: what a deploy would change, against what runs (read-only).

Two unified diffs: the task definition (normalised: fields ECS fills in are ignored) against the
PRIMARY deployment's, and the service settings the environment folder declares against the
service's. Exit 0 whether or not anything differs (the verdict is about the command); `--json`
carries `data.changed`.
"""

from __future__ import annotations

import typer

from ground.result import SUCCESS, result
from papyrus_ops.commands.render import definitions
from papyrus_ops.runner import EnvOpt, JsonOpt, answer, prepare


def register(app) -> None:
    @app.command("diff")
    def diff_cmd(
        env: str = EnvOpt,
        image: str = typer.Option(None, "--image", "-i",
                                  help="Diff for this image (default: the one running)."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Show what a deploy would change in the task and service definitions; change nothing."""
        settings = prepare(env, as_json, flow="diff")
        d = definitions(settings, image, as_json, "diff")
        data = {k: d[k] for k in ("image", "running_task_definition", "task_definition_diff",
                                  "service_diff", "changed")}
        reason = ("a deploy would change the task or service definition" if d["changed"]
                  else "no change")

        def show(_res: dict) -> None:
            typer.echo(f"--- task definition ({d['running_task_definition'].rsplit('/', 1)[-1]}"
                       " -> rendered)")
            typer.echo(d["task_definition_diff"])
            typer.echo(f"--- service {settings.service} (declared settings)")
            typer.echo(d["service_diff"])

        answer(result("diff", env, SUCCESS, reason, data=data), as_json, human=show)
