"""KMS Sign / Verify / GetPublicKey as AWS answers them where moto differs.

moto 5.2.5 signs and verifies for real (its keys are `cryptography` keys), but:

* **`MessageType=DIGEST` is ignored**: moto hashes the 32-byte digest again and signs that, so a
  signature of a digest never verifies anywhere else (`cryptography`, openssl, a real KMS
  public key). AWS: "DIGEST … KMS skips the hashing step" and signs the digest as given; the
  digest must be as long as the algorithm's hash (KMS API Reference, Sign: `MessageType`;
  Verify: `MessageType`). Here a DIGEST request is signed / verified "prehashed".
* **Verify of a bad signature returns `SignatureValid: false`**: AWS never does — "If the
  signature is not verified, the Verify operation fails with a KMSInvalidSignatureException
  exception" (KMS API Reference, Verify).
* **GetPublicKey's `KeyId` is the bare key id**: AWS returns "the Amazon Resource Name (key ARN)
  of the asymmetric KMS key from which the public key was downloaded" (KMS API Reference,
  GetPublicKey), which is what a verifier compares with the ARN Sign returned.

RAW messages are left to moto (it signs those correctly).
"""

from __future__ import annotations

import base64
import json

from moto.core.exceptions import JsonRESTError
from moto.kms.exceptions import ValidationException
from moto.kms.responses import KmsResponse

from sandbox.patches import Patches


class KMSInvalidSignatureException(JsonRESTError):
    code = 400

    def __init__(self) -> None:
        super().__init__("KMSInvalidSignatureException", "")


def _hash(algorithm: str):
    from cryptography.hazmat.primitives import hashes

    bits = algorithm.rsplit("_", 1)[-1]
    return {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[bits]


def _scheme(algorithm: str, digest: bytes):
    """(cryptography key method's trailing arguments) for a prehashed digest."""
    from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

    h = _hash(algorithm)
    if len(digest) != h.digest_size:
        raise ValidationException(f"Digest is invalid length for algorithm {algorithm}.")
    pre = utils.Prehashed(h)
    if algorithm.startswith("ECDSA"):
        return (ec.ECDSA(pre),)
    if algorithm.startswith("RSASSA_PSS"):
        return (padding.PSS(mgf=padding.MGF1(h), salt_length=padding.PSS.DIGEST_LENGTH), pre)
    return (padding.PKCS1v15(), pre)


def _key_and_digest(self: KmsResponse):
    key_id = self._get_param("KeyId")
    self._validate_key_id(key_id)
    algorithm = self._get_param("SigningAlgorithm")
    key = self.kms_backend.describe_key(key_id)
    if key.key_usage != "SIGN_VERIFY":
        raise ValidationException(
            f"1 validation error detected: Value '{key.id}' at 'KeyId' failed to satisfy "
            "constraint: Member must point to a key with usage: 'SIGN_VERIFY'")
    if algorithm not in key.signing_algorithms:
        raise ValidationException(
            f"1 validation error detected: Value '{algorithm}' at 'SigningAlgorithm' failed to "
            f"satisfy constraint: Member must satisfy enum value set: {key.signing_algorithms}")
    digest = self._get_param("Message") or b""
    return key, algorithm, digest, _scheme(algorithm, digest)


def _is_digest(self: KmsResponse) -> bool:
    return (self._get_param("MessageType") or "RAW") == "DIGEST"


def _sign(self: KmsResponse) -> str:
    if not _is_digest(self):
        return _PATCHES.original(KmsResponse, "sign")(self)
    key, algorithm, digest, scheme = _key_and_digest(self)
    signature = key.private_key.private_key.sign(digest, *scheme)
    return json.dumps({"KeyId": key.arn, "Signature": base64.b64encode(signature).decode(),
                       "SigningAlgorithm": algorithm})


def _verify(self: KmsResponse) -> str:
    from cryptography.exceptions import InvalidSignature

    if not _is_digest(self):
        answer = _PATCHES.original(KmsResponse, "verify")(self)
        if not json.loads(answer).get("SignatureValid"):
            raise KMSInvalidSignatureException()
        return answer
    key, algorithm, digest, scheme = _key_and_digest(self)
    signature = self._get_param("Signature") or ""
    try:
        signature = base64.b64decode(signature) if isinstance(signature, str) else signature
        key.private_key.private_key.public_key().verify(signature, digest, *scheme)
    except (InvalidSignature, ValueError):
        raise KMSInvalidSignatureException() from None
    return json.dumps({"KeyId": key.arn, "SignatureValid": True, "SigningAlgorithm": algorithm})


def _get_public_key(self: KmsResponse) -> str:
    answer = json.loads(_PATCHES.original(KmsResponse, "get_public_key")(self))
    answer["KeyId"] = self.kms_backend.describe_key(self._get_param("KeyId")).arn
    return json.dumps(answer)


_PATCHES = Patches((KmsResponse, "sign", _sign), (KmsResponse, "verify", _verify),
                   (KmsResponse, "get_public_key", _get_public_key))
install, uninstall = _PATCHES.install, _PATCHES.uninstall
