"""`papyrus-ops deploy`: the exit code is the verdict (0 worked, 1 did not, 2 bad input).

Bad input is answered before any flow runs (and so before Prefect is imported or a temporary
Prefect server starts): the options, the environment, the image reference's shape, and whether
ECR has that image (read-only). The flow pins the image again itself — a UI run has no CLI in
front of it."""

from __future__ import annotations

import math

import typer

from papyrus_ops.runner import EnvOpt, JsonOpt, answer, fail, prepare, run_flow


def _seconds(option: str, text: str | None, low: float, high: float, as_json: bool
             ) -> float | None:
    """A finite number of seconds within [low, high]; anything else is one-line bad input."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or not low <= value <= high:
        fail(f"{option} must be a number of seconds from {low:g} to {high:g}, got {text!r}",
             as_json=as_json, flow="deploy")
    return value


def resolve_or_refuse(settings, image: str, as_json: bool) -> None:
    """ECR, read-only: a malformed reference, another repository or registry, an unknown tag
    or digest is bad input (exit 2). Only a deterministic answer refuses: an ECR that cannot be
    reached is left to the flow, which retries it."""
    from botocore.exceptions import BotoCoreError, ClientError

    from ground import aws
    from ground.retry import denied_actions, is_deterministic
    from tasks.image_ref import parse_image_ref, resolve_image

    try:
        parse_image_ref(image, settings.ecr_repository)
        resolve_image(aws.client("ecr", settings.region), image, settings.ecr_repository,
                      settings.region)
    except ValueError as e:
        fail(str(e), as_json=as_json, flow="deploy", env=settings.env)
    except ClientError as e:
        if denied_actions(e):  # the input may be fine: a right is missing (exit 1, not 2)
            fail(f"image {image!r}: {e}", 1, as_json=as_json, flow="deploy", env=settings.env)
        if is_deterministic(e):
            fail(f"image {image!r}: {e}", as_json=as_json, flow="deploy", env=settings.env)
    except BotoCoreError:
        pass


def register(app) -> None:
    @app.command("deploy")
    def deploy_cmd(
        image: str = typer.Option(..., "--image", "-i",
                                  help="tag, repo:tag, repo@sha256:…, or full ECR URI"),
        env: str = EnvOpt,
        plan: bool = typer.Option(False, "--plan", help="Show the plan and diff; change nothing."),
        timeout: str = typer.Option(None, "--timeout", help="Seconds to wait for a verdict."),
        poll: str = typer.Option(None, "--poll", help="Seconds between polls."),
        no_rollback: bool = typer.Option(False, "--no-rollback"),
        skip_preflight: bool = typer.Option(False, "--skip-preflight"),
        yes: bool = typer.Option(False, "--yes",
                                 help="Plan and deploy in one go, where the environment "
                                      "requires no approval. Without it a deploy needs a "
                                      "recorded `--plan` of the same plan (digest, running "
                                      "revision, rendered definitions)."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Deploy an image to the environment's ECS service and judge the result."""
        timeout_s = _seconds("--timeout", timeout, 1, 24 * 3600, as_json)
        poll_s = _seconds("--poll", poll, 0.1, 600, as_json)
        settings = prepare(env, as_json, flow="deploy")
        if yes and plan:
            fail("--yes goes with a deploy, not with --plan", as_json=as_json, flow="deploy",
                 env=env)
        if yes and settings.approval_required:
            fail(f"environment {env!r} requires approval between the plan and the deploy: "
                 "--yes is not allowed here; run --plan first", as_json=as_json, flow="deploy",
                 env=env)
        resolve_or_refuse(settings, image, as_json)
        # Deferred: importing the flow imports Prefect (~1 s); bad input is answered without it.
        from flows.deploy import deploy

        res = run_flow(deploy, env=env, image=image, plan=plan, timeout_seconds=timeout_s,
                       poll_seconds=poll_s, rollback=not no_rollback,
                       skip_preflight=skip_preflight,
                       # The CLI never pauses (it waits for its own run; nobody watches its
                       # server): a deploy is bound to a recorded plan, or --yes.
                       approval="yes" if yes else "recorded")
        answer(res, as_json)
