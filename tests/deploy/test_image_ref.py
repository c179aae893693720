"""The image-reference parser: every accepted form, and a clear ValueError for the rest."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.image_ref import DIGEST_RE, parse_image_ref

DIGEST = "sha256:" + "ab" * 32
ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"


@pytest.mark.parametrize(("text", "repo", "tag", "digest", "registry"), [
    ("v1.2", "papyrus", "v1.2", None, None),
    ("latest", "papyrus", "latest", None, None),
    ("papyrus:src-abc", "papyrus", "src-abc", None, None),
    (f"papyrus@{DIGEST}", "papyrus", None, DIGEST, None),
    ("team/papyrus:1", "team/papyrus", "1", None, None),
    (f"{ECR}/papyrus:latest", "papyrus", "latest", None, ECR),
    (f"{ECR}/papyrus@{DIGEST}", "papyrus", None, DIGEST, ECR),
])
def test_accepted_forms(text, repo, tag, digest, registry):
    ref = parse_image_ref(text, "papyrus")
    assert (ref.repository, ref.tag, ref.digest, ref.registry) == (repo, tag, digest, registry)
    assert parse_image_ref(str(ref), "papyrus") == ref


@pytest.mark.parametrize("text", [
    "", " latest", "latest ", "Papyrus:latest", "papyrus:", "papyrus@sha256:abc",
    f"papyrus@{DIGEST.upper()}", "papyrus:bad tag", "docker.io/library/nginx:1",
    "ghcr.io/x/y:1", "papyrus/", "../etc:1", "papyrus:-x", "pap yrus", "ｐａｐｙｒｕｓ",
    "papyrus:" + "x" * 129, f"{ECR}/papyrus",
])
def test_rejected_forms(text):
    with pytest.raises(ValueError, match="malformed image reference"):
        parse_image_ref(text, "papyrus")


@given(st.text(max_size=80))
def test_never_crashes_and_accepts_only_well_formed(text):
    try:
        ref = parse_image_ref(text, "papyrus")
    except ValueError as e:
        assert "\n" not in str(e)
        return
    assert ref.tag or (ref.digest and DIGEST_RE.fullmatch(ref.digest))
    assert not any(c.isspace() for c in str(ref))
