"""S3 conditional writes, atomic per key as S3 decides them.

S3 evaluates `If-None-Match: *` and `If-Match: <etag>` on PutObject (and CompleteMultipartUpload,
CopyObject) and `If-Match` on DeleteObject at write time: of two concurrent conditional writes to
one key, at most one succeeds; the other gets 412 Precondition Failed (or 409
ConditionalRequestConflict, to be retried). S3 User Guide, "How to prevent object overwrites with
conditional writes" and "How to perform conditional deletes"; S3 API Reference, PutObject and
DeleteObject.

moto 5.2.5 implements the headers (moto/s3/responses.py, `put_object` and `delete_object`) as
read-then-write without a lock, and its server serves each request on its own thread: two
concurrent `If-None-Match: *` puts could both see "no object" and both succeed, which S3 never
allows. This layer serialises every object write (PUT, DELETE, multipart completion) per
bucket and key around moto, so moto's check and its write happen as one step. Reads and writes
to other keys are not held up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs, unquote

_GUARD = threading.Lock()
_KEYS: dict[tuple[str, str], threading.Lock] = {}


def _key_lock(bucket: str, key: str) -> threading.Lock:
    with _GUARD:
        return _KEYS.setdefault((bucket, key), threading.Lock())


def _write_target(environ: dict) -> tuple[str, str] | None:
    """(bucket, key) of a path-style object write (PUT, DELETE, multipart POST), else None."""
    method = environ.get("REQUEST_METHOD")
    if method not in ("PUT", "DELETE", "POST"):
        return None
    if "s3/aws4_request" not in environ.get("HTTP_AUTHORIZATION", ""):
        return None
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if method == "POST" and "uploadId" not in query:
        return None  # only CompleteMultipartUpload writes the object
    bucket, _, key = unquote(environ.get("PATH_INFO", "")).lstrip("/").partition("/")
    return (bucket, key) if bucket and key else None


def wrap(app: Callable) -> Callable:
    def middleware(environ: dict, start_response: Callable) -> Iterable[bytes]:
        target = _write_target(environ)
        if target is None:
            return app(environ, start_response)
        with _key_lock(*target):
            # The whole answer is produced under the lock: moto's check and its write.
            return list(app(environ, start_response))

    return middleware
