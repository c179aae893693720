"""`papyrus-ops evidence upload-pending`: finish uploads that failed earlier, exactly once.
`papyrus-ops evidence verify <s3-uri|folder>`: is the evidence what was written?

upload-pending: exit 0 when nothing is left pending, 1 when an upload failed again (its marker
stays), 2 bad input. `--json` prints `ground.result`'s dict; `data.bundles` lists each folder
and its status.

verify: every file's SHA-256 against manifest.json, the manifest against its KMS signature
(offline with the key's public key by default: kms:GetPublicKey once, or none with
`--public-key`; `--kms` asks kms:Verify). Exit 0 all match, 1 naming each mismatch (or AWS
failed), 2 bad input. See docs/evidence-integrity.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from papyrus_ops.runner import EnvOpt, JsonOpt, answer, fail, prepare

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
                              lambda region=None: aws.client("s3", region or settings.region),
                              lambda region=None: aws.client("kms", region or settings.region))
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

    register_verify(app)


VERIFY_FLOW = "evidence_verify"


def _verify_human(res: dict) -> None:
    data = res.get("data") or {}
    for b in data.get("bundles") or []:
        typer.echo(f"{b['where']}: {b['files']} files, signature {b['signature']}"
                   + (f" ({b['key_id']})" if b.get("key_id") else ""))
    for problem in data.get("problems") or []:
        typer.echo(f"MISMATCH {problem}", err=True)


def _verify_reason(report, check: str) -> str:
    if report.problems:
        n = len(report.problems)
        return f"{n} mismatch{'es' if n > 1 else ''}: " + "; ".join(report.problems)
    files = sum(b.files for b in report.bundles)
    states = sorted({b.signature for b in report.bundles})
    return (f"{len(report.bundles)} bundle(s), {files} files match their manifests; "
            f"signature {'/'.join(states)} ({check})")


def register_verify(app) -> None:

    @app.command("verify")
    def verify_cmd(
        target: str = typer.Argument(..., help="s3://<bucket>/<prefix>/ or a folder: one "
                                               "bundle, or every bundle below it."),
        env: str = EnvOpt, as_json: bool = JsonOpt,
        public_key: str = typer.Option("", "--public-key", help="PEM public key of the "
                                       "signing key: check offline, no KMS call."),
        use_kms: bool = typer.Option(False, "--kms", help="Ask kms:Verify instead of "
                                     "checking with the key's public key."),
        require_signature: bool = typer.Option(False, "--require-signature", help="An "
                                               "unsigned bundle fails (always so when the "
                                               "environment has a signing key)."),
    ) -> None:
        """Check every file's SHA-256 against manifest.json and the manifest's signature;
        exit 1 naming each mismatch."""
        started = time.time()
        from ground.log_redaction import install_log_redaction
        from ground.settings import ConfigError, load_env

        install_log_redaction()
        try:
            settings = load_env(env)
        except ConfigError as e:
            fail(str(e), as_json=as_json, flow=VERIFY_FLOW, env=env)
        if public_key and use_kms:
            fail("--public-key and --kms: choose one way to check the signature",
                 as_json=as_json, flow=VERIFY_FLOW, env=env)
        key = settings.evidence_signing_key
        is_s3 = target.startswith("s3://")
        if is_s3 or (key and not public_key):
            settings = prepare(env, as_json, VERIFY_FLOW)  # AWS is needed: the env file, too
        from artifacts import signing
        from artifacts import verify as check
        from ground import aws
        from ground.result import FAILED, SUCCESS, result

        try:
            bucket, prefix = check.parse_s3_uri(target) if is_s3 else ("", "")
            if not is_s3 and not Path(target).is_dir():
                raise check.TargetError(f"{target}: not a folder (or s3://<bucket>/<prefix>/)")
            verifier = (signing.PublicKeyVerifier.from_pem(Path(public_key)) if public_key
                        else None)
        except ValueError as e:
            fail(str(e), as_json=as_json, flow=VERIFY_FLOW, env=env)
        how = f"public key {public_key}" if public_key else "no key configured: not checked"
        require = require_signature or bool(key)
        data: dict = {"target": target, "require_signature": require}
        try:
            if verifier is None and key:
                kms = aws.client("kms", settings.region)
                if use_kms:
                    verifier, how = signing.KmsVerifier(kms, key), f"kms:Verify with {key}"
                else:
                    verifier = signing.PublicKeyVerifier.from_kms(kms, key)
                    how = f"offline, the public key of {key}"
            report = (check.verify_s3(aws.client("s3", settings.region), bucket, prefix,
                                      verifier, require_signature=require) if is_s3
                      else check.verify_folder(Path(target), verifier,
                                               require_signature=require))
        except check.TargetError as e:
            fail(str(e), as_json=as_json, flow=VERIFY_FLOW, env=env)
        except Exception as e:  # noqa: BLE001 - AWS refused or failed: the check did not run
            error = f"{type(e).__name__}: {e}"
            res = result(VERIFY_FLOW, env, FAILED, f"could not verify {target}: {error}",
                         error=error, started=started, data=data)
            answer(res, as_json, human=_verify_human)
        data.update(check=how, bundles=[b.as_dict() for b in report.bundles],
                    problems=report.problems)
        res = result(VERIFY_FLOW, env, SUCCESS if report.ok else FAILED,
                     _verify_reason(report, how), started=started, data=data)
        answer(res, as_json, human=_verify_human)
