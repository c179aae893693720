"""`papyrus-ops render`: the task and service definitions as a deploy would send them (read-only).

The environment folder rendered with this account's ARNs and IDs; with `--image`, that image
pinned to its digest (as the deploy pins it), otherwise the image that runs now. Prints the two
documents as JSON (pipe them anywhere); `--json` prints the result contract with them in `data`.
"""

from __future__ import annotations

import json

import typer

from ground.result import SUCCESS, result
from papyrus_ops.runner import EnvOpt, JsonOpt, answer, fail, prepare


def definitions(settings, image: str | None, as_json: bool, flow: str) -> dict:
    """compare_with_running for the CLI: bad input (unknown image, missing service) exits 2."""
    # Deferred, as every command's AWS and Prefect imports are: `--help` and input errors
    # answer without paying for boto3 (~0.25 s) or Prefect (~1 s).
    from ground import aws
    from tasks.image_ref import resolve_image
    from tasks.taskdef import compare_with_running

    clients = {n: aws.client(n, settings.region) for n in ("ecs", "ecr", "iam", "secretsmanager",
                                                            "ec2", "elbv2")}
    try:
        uri = resolve_image(clients["ecr"], image, settings.ecr_repository,
                            settings.region).uri if image else None
        return compare_with_running(settings, clients, uri)
    except ValueError as e:
        fail(str(e), as_json=as_json, flow=flow, env=settings.env)


def register(app) -> None:
    @app.command("render")
    def render_cmd(
        env: str = EnvOpt,
        image: str = typer.Option(None, "--image", "-i",
                                  help="Render for this image (default: the one running)."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Print the task and service definitions a deploy would send; change nothing."""
        settings = prepare(env, as_json, flow="render")
        d = definitions(settings, image, as_json, "render")
        data = {"image": d["image"], "task_definition": d["task_definition"],
                "service": d["service"]}
        if not as_json:
            typer.echo(json.dumps({"taskDefinition": d["task_definition"],
                                   "service": d["service"]}, indent=2, sort_keys=True))
            raise typer.Exit(0)
        answer(result("render", env, SUCCESS, f"rendered for {d['image']}", data=data), True)
