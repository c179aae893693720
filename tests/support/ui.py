"""The Prefect UI, as an operator uses it, in headless Chromium (Debian's, driven by Playwright;
never a browser of Playwright's own): open a deploy deployment, Run → Custom run, fill the form,
submit, follow the run to Completed, open its `deploy-evidence` artifact; or open a Paused run,
read its approval artifact, answer its Resume form (`approve_in_ui`). Every request must stay on
127.0.0.1."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")


def _recorders(ui: str, tmp_path: Path):
    """(the screenshots, the URLs refused, `shot(page, name)`, the loopback-only route
    handler): what every UI walk records."""
    shots: list[Path] = []
    external: list[str] = []

    def shot(page, name: str) -> None:
        page.wait_for_timeout(700)  # let transitions settle
        path = tmp_path / f"{len(shots) + 1:02d}-{name}.png"
        page.screenshot(path=str(path))
        shots.append(path)

    def loopback_only(route) -> None:
        url = route.request.url
        if url.startswith((ui, "data:", "blob:")):
            route.continue_()
        else:
            external.append(url)
            route.abort()

    return shots, external, shot, loopback_only



def _submitted_run_id(client, api: str, dep_id, run_name: str) -> str:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterName,
    )

    from tests.support.waiting import wait_until

    def found():
        with client(api) as c:
            runs = c.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_name])),
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep_id])))
        return str(runs[0].id) if len(runs) == 1 else None

    return wait_until(found, 60, 0.5, f"the flow run {run_name!r} the form created")


def custom_deploy_run(ui: str, api: str, tmp_path: Path, *, deployment: str, pool: str,
                      image: str, digest: str, run_name: str, wait_terminal, client):
    """Run `deploy/<deployment>` from the UI's custom-run form with `image`; returns
    (the finished flow run, the screenshots, the URLs the page tried to reach off loopback)."""
    import pytest

    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="needs the playwright package (pip install playwright)")
    expect = sync_api.expect
    expect.set_options(timeout=60_000)  # a loaded 2-core machine renders slowly
    shots, external, shot, loopback_only = _recorders(ui, tmp_path)

    problems: list[str] = []  # HTTP errors, failed requests, console errors: for the report

    def on_response(response) -> None:
        if response.status >= 400:
            body = ""
            with contextlib.suppress(Exception):
                body = response.text()[:500]
            problems.append(f"{response.status} {response.request.method} {response.url} "
                            f"{response.request.post_data or ''} -> {body}")

    with client(api) as c:
        dep_id = c.read_deployment_by_name(f"deploy/{deployment}").id
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
            viewport={"width": 1400, "height": 1000})
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.route("**/*", loopback_only)
            page.on("response", on_response)
            page.on("requestfailed", lambda r: problems.append(f"failed {r.method} {r.url} "
                                                                f"{r.failure}"))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type == "error" else None)
            page.goto(f"{ui}/deployments")
            page.get_by_role("link", name=deployment, exact=True).first.click()
            page.wait_for_url(f"**/deployments/deployment/{dep_id}**")
            expect(page.get_by_text(pool).first).to_be_visible()
            shot(page, "deployment")

            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_role("button", name="Custom run").click()
            page.wait_for_url("**/run?**")
            expect(page.get_by_text("pinned to its digest")).to_be_visible()
            page.locator("input.p-text-input__control").first.fill(run_name)
            # The image is the form's one free-text field (env is a choice of folders) and has
            # no default: the operator says what ships.
            image_field = page.locator("textarea").last
            expect(image_field).to_have_value("")
            image_field.fill(image)
            shot(page, "custom-run-form")
            page.get_by_role("button", name="Submit").click()
            # Back on the deployment's page (a toast says "scheduled to start now", briefly),
            # the new run is listed: open it.
            page.wait_for_url(re.compile(r".*/deployments/deployment/[0-9a-f-]+(\?.*)?$"))
            # The page lists the run (its "Next Run" card while Scheduled, the run list once it
            # started); open it by its id. Clicking the first link with the run's name raced
            # the page's refresh on a loaded machine: the run had already completed, the card
            # was going, and the click on it navigated nowhere.
            run_id = _submitted_run_id(client, api, dep_id, run_name)
            expect(page.locator(f"a[href*='/runs/flow-run/{run_id}']").first).to_be_visible()
            page.goto(f"{ui}/runs/flow-run/{run_id}")

            run = wait_terminal(api, run_id)
            assert run.state.type.value == "COMPLETED", run.state.message
            # A hand-given run name is kept (ground/run_names.py).
            assert run.name == run_name and run.parameters["image"] == image
            page.reload()
            expect(page.locator(".state-badge", has_text="Completed").first).to_be_visible()
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(2000)  # the task graph draws after the data arrives
            shot(page, "run-completed")

            page.locator("#artifacts").click()
            card = page.locator("a[href*='/artifacts/artifact/']").filter(
                has=page.get_by_text("deploy-evidence", exact=True)).first
            expect(card).to_be_visible()
            shot(page, "run-artifacts")
            card.click()
            expect(page.get_by_role("heading", name="Evidence — deploy: PASS")).to_be_visible()
            expect(page.get_by_text(digest).first).to_be_visible()
            expect(page.get_by_text(run_name).first).to_be_visible()
            shot(page, "deploy-evidence")
        except BaseException:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(tmp_path / "failure.png"))
                (tmp_path / "failure.txt").write_text(
                    page.url + "\n" + "\n".join(problems) + "\n\n" + page.inner_text("body"))
            print("failure screenshot:", tmp_path / "failure.png")
            raise
        finally:
            browser.close()
    return run, shots, external


def approve_in_ui(ui: str, tmp_path: Path, *, flow_run_id: str, artifact_key: str,
                  evidence_text: str, approve: bool, reason: str) -> tuple[list[Path], list[str]]:
    """An operator's approval: open the Paused run, read its `artifact_key` artifact (it must
    show `evidence_text`), then Resume → the form (approve toggle, reason) → Submit. Returns
    (the screenshots, the URLs the page tried to reach off loopback)."""
    import pytest

    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="needs the playwright package (pip install playwright)")
    expect = sync_api.expect
    expect.set_options(timeout=60_000)
    shots, external, shot, loopback_only = _recorders(ui, tmp_path)

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
            viewport={"width": 1400, "height": 1000})
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.route("**/*", loopback_only)
            page.goto(f"{ui}/runs/flow-run/{flow_run_id}")
            expect(page.locator(".state-badge", has_text="Paused").first).to_be_visible()
            shot(page, "run-paused")

            page.locator("#artifacts").click()
            card = page.locator("a[href*='/artifacts/artifact/']").filter(
                has=page.get_by_text(artifact_key, exact=True)).first
            expect(card).to_be_visible()
            card.click()
            expect(page.get_by_text(evidence_text).first).to_be_visible()
            shot(page, "approval-evidence")

            page.goto(f"{ui}/runs/flow-run/{flow_run_id}")
            page.get_by_role("button", name="Resume", exact=True).click()
            form = page.locator(".p-modal__card").filter(has_text="Resume Flow Run")
            expect(form.get_by_text("Approve")).to_be_visible()
            toggle = form.get_by_role("switch")
            if (toggle.get_attribute("aria-checked") == "true") != approve:
                toggle.click()
            expect(toggle).to_have_attribute("aria-checked", str(approve).lower())
            form.locator("textarea").fill(reason)
            shot(page, "resume-form")
            form.get_by_role("button", name="Submit").click()
            expect(page.locator(".state-badge", has_text="Paused")).to_have_count(0)
            shot(page, "run-resumed")
        except BaseException:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(tmp_path / "failure.png"))
                (tmp_path / "failure.txt").write_text(page.url + "\n\n" + page.inner_text("body"))
            print("failure screenshot:", tmp_path / "failure.png")
            raise
        finally:
            browser.close()
    return shots, external
