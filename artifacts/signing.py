"""The manifest's signature: an asymmetric KMS key signs the SHA-256 of manifest.json.

``manifest.json`` lists every evidence file with its SHA-256, so signing the manifest signs the
bundle. KMS signs the digest (``kms:Sign``, ``MessageType=DIGEST``, ``ECDSA_SHA_256`` — the key
is ``ECC_NIST_P256``, ``SIGN_VERIFY``); the signature, the key's ARN and the algorithm are kept
beside the manifest in ``manifest.json.sig.json`` and uploaded with the bundle:

    {"schema": 1, "manifest": "manifest.json", "manifest_sha256": "<hex>",
     "key": "alias/papyrus-evidence-signing", "key_id": "arn:aws:kms:…:key/…",
     "signing_algorithm": "ECDSA_SHA_256", "message_type": "DIGEST",
     "signature": "<base64 DER>", "signed_at": "2025-10-21T10:15:00Z"}

Checking needs no KMS rights beyond ``kms:GetPublicKey`` (once), or none with the public key
as a PEM file: ``check_signature`` recomputes the manifest's digest and verifies the signature
over it with ``cryptography`` (an ECDSA signature over a SHA-256 digest is verified "prehashed",
which is what KMS's DIGEST message type signs). ``KmsVerifier`` asks ``kms:Verify`` instead.
Whichever way, the key that counts is the one the caller trusts (the environment's configured
key or the PEM), never the key id written in the signature file, which anyone could rewrite.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

# The bundle's file names (artifacts.storage takes them from here: storage uploads and
# re-signs pending bundles, so this module needs nothing of it).
MANIFEST = "manifest.json"
# Beside the manifest: it cannot be listed in the manifest it signs, so it is not a bundle
# file either.
SIGNATURE = "manifest.json.sig.json"
SIGNING_ALGORITHM = "ECDSA_SHA_256"
# What the offline check knows: each algorithm's hash over the manifest (all SHA-256 here, the
# digest the signature file records). RSASSA-PSS is left to `kms:Verify` (--kms).
_OFFLINE = ("ECDSA_SHA_256", "RSASSA_PKCS1_V1_5_SHA_256")


def _sha256_hex(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


class SigningError(RuntimeError):
    """The manifest could not be signed (KMS refused or could not be reached)."""


def read_signature(folder: Path) -> dict | None:
    try:
        doc = json.loads((Path(folder) / SIGNATURE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def is_current(folder: Path, key: str) -> bool:
    """The folder's signature is for its manifest as it is now, by `key`."""
    doc = read_signature(folder)
    manifest = Path(folder) / MANIFEST
    if doc is None or not manifest.is_file():
        return False
    return (doc.get("key") == key
            and doc.get("manifest_sha256") == _sha256_hex(manifest))


def sign_manifest(folder: Path, kms: Any, key: str) -> dict:
    """Sign `folder/manifest.json` with `key` (alias or ARN); write and return the signature
    document. A signature already there for this manifest and key is kept: ECDSA signatures
    differ each time, and a new one would add an object version to the evidence bucket."""
    folder = Path(folder)
    if is_current(folder, key):
        return read_signature(folder)  # type: ignore[return-value]
    digest_hex = _sha256_hex(folder / MANIFEST)
    try:
        resp = kms.sign(KeyId=key, Message=bytes.fromhex(digest_hex), MessageType="DIGEST",
                        SigningAlgorithm=SIGNING_ALGORITHM)
    except Exception as err:  # noqa: BLE001 - any failure leaves the bundle pending
        raise SigningError(f"kms:Sign with {key} failed: {type(err).__name__}: {err}") from err
    doc = {
        "schema": 1,
        "manifest": MANIFEST,
        "manifest_sha256": digest_hex,
        "key": key,
        "key_id": resp["KeyId"],
        "signing_algorithm": resp["SigningAlgorithm"],
        "message_type": "DIGEST",
        "signature": base64.b64encode(resp["Signature"]).decode("ascii"),
        "signed_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    tmp = folder / f".{SIGNATURE}.tmp"
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / SIGNATURE)
    return doc


# -- checking -----------------------------------------------------------------------------------
def _key_uuid(key_id: str | None) -> str:
    """`arn:…:key/<uuid>` or `<uuid>` -> `<uuid>` (GetPublicKey and Sign name keys by ARN)."""
    return (key_id or "").rsplit("key/", 1)[-1]


@dataclass
class PublicKeyVerifier:
    """Offline: the public key (from a PEM, or kms:GetPublicKey once) and, when known, the ARN
    of the key it belongs to (the signature file must name the same key)."""

    public_key: Any
    key_id: str | None = None
    source: str = ""

    @classmethod
    def from_pem(cls, path: Path) -> PublicKeyVerifier:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            key = load_pem_public_key(Path(path).read_bytes())
        except (OSError, ValueError, TypeError) as err:
            raise ValueError(f"--public-key {path}: not a readable PEM public key "
                             f"({type(err).__name__})") from None
        return cls(key, None, f"public key {path}")

    @classmethod
    def from_kms(cls, kms: Any, key: str) -> PublicKeyVerifier:
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        resp = kms.get_public_key(KeyId=key)
        return cls(load_der_public_key(resp["PublicKey"]), resp.get("KeyId"),
                   f"the public key of {key} (kms:GetPublicKey)")

    def verify(self, digest: bytes, signature: bytes, algorithm: str) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

        if algorithm not in _OFFLINE:
            raise ValueError(f"signing algorithm {algorithm!r} is not checked offline "
                             "(use --kms)")
        prehashed = utils.Prehashed(hashes.SHA256())
        try:
            if algorithm.startswith("ECDSA") and isinstance(self.public_key,
                                                            ec.EllipticCurvePublicKey):
                self.public_key.verify(signature, digest, ec.ECDSA(prehashed))
            elif algorithm.startswith("RSASSA") and isinstance(self.public_key,
                                                               rsa.RSAPublicKey):
                self.public_key.verify(signature, digest, padding.PKCS1v15(), prehashed)
            else:
                return False
        except InvalidSignature:
            return False
        return True


@dataclass
class KmsVerifier:
    """Online: kms:Verify with the trusted key (AWS answers KMSInvalidSignatureException for a
    signature that does not verify)."""

    kms: Any
    key: str
    key_id: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        self.source = self.source or f"{self.key} (kms:Verify)"

    def verify(self, digest: bytes, signature: bytes, algorithm: str) -> bool:
        try:
            resp = self.kms.verify(KeyId=self.key, Message=digest, MessageType="DIGEST",
                                   Signature=signature, SigningAlgorithm=algorithm)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "KMSInvalidSignatureException":
                return False
            raise
        self.key_id = self.key_id or resp.get("KeyId")
        return bool(resp.get("SignatureValid"))


def check_signature(manifest_bytes: bytes, doc: dict | None, verifier: Any | None) -> tuple[
        str, list[str]]:
    """(status, problems) of a manifest and its signature document.

    status: "valid", "invalid", "unsigned", or "not checked" (a signature but no key to check
    it against). The signature is checked over the digest of the manifest as it is, so a
    changed manifest fails whatever the signature file claims."""
    if doc is None:
        return "unsigned", []
    digest = hashlib.sha256(manifest_bytes).digest()
    problems = []
    if doc.get("manifest_sha256") != digest.hex():
        problems.append(f"{MANIFEST}: sha256 {digest.hex()} != signed "
                        f"{doc.get('manifest_sha256')}")
    if verifier is None:
        return ("invalid" if problems else "not checked"), problems
    if verifier.key_id and _key_uuid(doc.get("key_id")) != _key_uuid(verifier.key_id):
        problems.append(f"{SIGNATURE}: signed by {doc.get('key_id')}, expected "
                        f"{verifier.key_id}")
        return "invalid", problems
    try:
        signature = base64.b64decode(str(doc.get("signature", "")), validate=True)
        ok = bool(signature) and verifier.verify(digest, signature,
                                                 str(doc.get("signing_algorithm")))
    except (ValueError, TypeError) as err:
        problems.append(f"{SIGNATURE}: {err}")
        return "invalid", problems
    if not ok:
        problems.append(f"{SIGNATURE}: the signature does not verify against "
                        f"{verifier.source} for this {MANIFEST}")
    return ("invalid" if problems else "valid"), problems
