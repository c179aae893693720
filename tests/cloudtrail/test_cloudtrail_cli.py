"""`papyrus-ops cloudtrail-archive`: bad input is one line and exit 2 with nothing written;
a good run prints its result and exits 0."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from tests.support.cli import invoke


def _iso(days_ago: float) -> str:
    d = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


BAD = [
    (["--days", "91"], "outside 1..90"),
    (["--days", "0"], "outside 1..90"),
    (["--days", "abc"], "not an integer"),
    (["--since", "2025-13-01T00:00:00Z"], "not an ISO-8601 UTC time"),
    (["--since", "last tuesday"], "not an ISO-8601 UTC time"),
    (["--until", "soon"], "not an ISO-8601 UTC time"),
    (["--since", _iso(1), "--until", _iso(2)], "is not before"),
    (["--since", _iso(100)], "more than 90 days ago"),
    (["--since", _iso(100), "--until", _iso(95)], "more than 90 days ago"),
    (["--days", "3", "--since", _iso(1)], "either days or since"),
    (["--incremental", "--since", _iso(1)], "incremental"),
    (["--max-rps", "0"], "must be a positive number"),
    (["--max-rps", "fast"], "not a number"),
    (["--env", "nope"], "unknown environment"),
]


@pytest.mark.parametrize("args, message", BAD,
                         ids=[f"{i}-{' '.join(a)[:20]}" if "20" not in " ".join(a)
                              else f"{i}-{a[0]}" for i, (a, _) in enumerate(BAD)])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, monkeypatch):
    root = tmp_path / "evidence"
    monkeypatch.setenv("PAPYRUS_EVIDENCE_ROOT", str(root))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never reached
    result = invoke("cloudtrail-archive", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("papyrus-ops: error:"), result.stderr
    assert message in lines[0]
    assert not root.exists()  # nothing written


@pytest.mark.usefixtures("prefect_server")
def test_cli_archive_json(ct_env):
    seeded = ct_env.seed(300, days=2, now=time.time() - 3600)
    result = invoke("cloudtrail-archive", "--env", "local", "--days", "3",
                    "--extra-name", "papyrus-deploy-oidc", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    data = out["data"]
    assert out["verdict"] == "success" and data["events"] == len(seeded)
    assert data["files"]["all"]["key"].startswith("docs/evidence/cloudtrail/")
    assert data["papyrus_events"] == 30
    assert out["evidence"]["folder"] and "manifest.json" not in out["evidence"]["files"]
