"""Build step of both images: fetch the RDS CA bundle and refuse it unless its SHA-256 is the
pinned one (`rds-global-bundle.sha256` beside this file). Standard library only: the slim base
has no curl. Usage: python fetch-rds-ca-bundle.py <pin file> <destination> [<url>] (the URL
only for tests)."""

import hashlib
import re
import sys
import urllib.request
from pathlib import Path

URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"


def main(pin_file: str, dest: str, url: str = URL) -> int:
    text = Path(pin_file).read_text()
    pins = [w for line in text.splitlines() if not line.lstrip().startswith("#")
            for w in line.split()[:1]]
    if not pins or not re.fullmatch(r"[0-9a-f]{64}", pins[0]):
        print(f"{pin_file}: no SHA-256 pinned for {url}", file=sys.stderr)
        return 1
    if not url.startswith(("https://", "http://127.0.0.1:")):
        print(f"{url}: only https (or a loopback test server)", file=sys.stderr)
        return 1
    with urllib.request.urlopen(url, timeout=60) as r:  # noqa: S310 - scheme checked above
        body = r.read()
    got = hashlib.sha256(body).hexdigest()
    if got != pins[0]:
        print(f"{url}: SHA-256 {got} is not the pinned {pins[0]}", file=sys.stderr)
        return 1
    out = Path(dest)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(body)
    out.chmod(0o644)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
