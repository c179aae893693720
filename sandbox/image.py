"""The sandbox's stand-in for `docker build` + `docker push` of `service/`.

No container engine runs here, so the image's identity is a content hash of the build context:
one layer whose digest is the SHA-256 of the `service/` tree, in an OCI-style manifest whose own
SHA-256 is the image digest. The same code always gives the same digest; any change gives another.

What a push leaves behind besides the manifest is the image's *content*: a copy of the build
context in each registered code store (`<state>/images/<digest hex>/`, see `register_store`),
keyed by the digest. The local ECS runtime runs the code of the digest a task pulled from there
(`code_dir`), so an image built from another tree really runs that tree — not the checkout.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
import threading
from pathlib import Path

SERVICE_DIR = Path(__file__).resolve().parent.parent / "service"
MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
_SKIP_DIRS = {"__pycache__", ".pytest_cache", "tests", ".ruff_cache"}


def _context_files(root: Path) -> list[Path]:
    """The build context's files, in order: what `.dockerignore` would leave (no tests, caches,
    bytecode or egg-info)."""
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() or _SKIP_DIRS.intersection(rel.parts) or rel.suffix == ".pyc":
            continue
        if any(part.endswith(".egg-info") for part in rel.parts):
            continue
        files.append(path)
    return files


def tree_hash(root: Path = SERVICE_DIR) -> str:
    """SHA-256 over (relative path, content) of every file of the build context, in order."""
    h = hashlib.sha256()
    for path in _context_files(root):
        rel = path.relative_to(root)
        data = path.read_bytes()
        h.update(f"{rel.as_posix()}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def manifest(root: Path = SERVICE_DIR) -> str:
    layer = tree_hash(root)
    doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 0,
            "digest": "sha256:" + hashlib.sha256(f"config:{layer}".encode()).hexdigest(),
        },
        "layers": [{
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "size": 0,
            "digest": f"sha256:{layer}",
        }],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


# -- the images' content: build contexts keyed by digest -----------------------------------------
_STORES: list[Path] = []
_STORES_LOCK = threading.Lock()


def register_store(store: Path) -> None:
    """Every push from now on (in this process) keeps its build context in `store` too: the
    sandbox registers `<state>/images` for as long as it runs."""
    with _STORES_LOCK:
        if Path(store) not in _STORES:
            Path(store).mkdir(parents=True, exist_ok=True)
            _STORES.append(Path(store))


def unregister_store(store: Path) -> None:
    with _STORES_LOCK:
        if Path(store) in _STORES:
            _STORES.remove(Path(store))


def _key(digest: str) -> str:
    return digest.removeprefix("sha256:")


def snapshot(root: Path, digests: list[str], stores: list[Path] | None = None) -> None:
    """Copy the build context under each digest in each store (idempotent: a digest already
    kept is left as it is; its content cannot differ, the digest is the content's hash)."""
    with _STORES_LOCK:
        targets = list(_STORES if stores is None else stores)
    root = Path(root)
    for store in targets:
        for digest in digests:
            dest = Path(store) / _key(digest)
            if dest.is_dir():
                continue
            tmp = Path(tempfile.mkdtemp(prefix=".push-", dir=store))
            for path in _context_files(root):
                target = tmp / path.relative_to(root)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
            try:
                tmp.rename(dest)  # atomic: a task never sees half a context
            except OSError:  # another push of the same digest won the race
                shutil.rmtree(tmp, ignore_errors=True)


def code_dir(store: Path | None, digest: str) -> Path | None:
    """The code of the image `digest`, if a push kept it in `store`."""
    if store is None or not digest:
        return None
    path = Path(store) / _key(digest)
    return path if (path / "papyrus" / "__init__.py").is_file() else None


def push(ecr, repository: str, tags: list[str], root: Path = SERVICE_DIR) -> str:
    """Put the `service/` image (or the tree at `root`) into ECR under each tag; returns its
    `sha256:` digest. Its build context is kept under that digest (`snapshot`)."""
    digest = _put_tagged(ecr, repository, manifest(root), tags)
    snapshot(root, [digest])
    return digest


def _put_tagged(ecr, repository: str, body: str, tags: list[str]) -> str:
    """PutImage of one single-platform manifest under each tag (idempotent); its digest."""
    digest = "sha256:" + hashlib.sha256(body.encode()).hexdigest()
    for tag in tags:
        with contextlib.suppress(ecr.exceptions.ImageAlreadyExistsException):
            ecr.put_image(repositoryName=repository, imageManifest=body, imageTag=tag,
                          imageManifestMediaType=MANIFEST_MEDIA_TYPE, imageDigest=digest)
    return digest


def push_build(ecr, repository: str, tag: str, build: str | None = None,
               root: Path = SERVICE_DIR) -> str:
    """Another build of the same code under `tag`: its manifest carries a build annotation, so
    the digest differs from `push`'s (and from other builds') while what runs is the same.
    Returns the digest."""
    body = json.loads(manifest(root))
    body["annotations"] = {"build": build or tag}
    text = json.dumps(body, sort_keys=True)
    digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    ecr.put_image(repositoryName=repository, imageManifest=text, imageTag=tag,
                  imageDigest=digest, imageManifestMediaType=MANIFEST_MEDIA_TYPE)
    snapshot(root, [digest])
    return digest


# -- a multi-arch image, as `docker buildx build --platform … --push` leaves it ------------------
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _put(ecr, repository: str, body: str, media_type: str, tag: str | None = None) -> str:
    """One PutImage with the digest ECR would compute (the SHA-256 of the manifest's bytes)."""
    digest = _sha(body)
    kw = {"imageTag": tag} if tag else {}
    with contextlib.suppress(ecr.exceptions.ImageAlreadyExistsException):
        ecr.put_image(repositoryName=repository, imageManifest=body, imageDigest=digest,
                      imageManifestMediaType=media_type, **kw)
    return digest


def _descriptor(media_type: str, body: str, **extra) -> dict:
    return {"mediaType": media_type, "digest": _sha(body), "size": len(body.encode()), **extra}


def push_index(ecr, repository: str, tag: str, platforms: tuple[str, ...] = (
        "linux/amd64", "linux/arm64"), build: str | None = None, provenance: bool = True,
        root: Path = SERVICE_DIR) -> dict:
    """What `docker buildx build --platform <platforms> -t <repo>:<tag> --push` leaves in ECR.

    One OCI image manifest per platform and, with buildx's default provenance attestation
    (since buildx 0.10), one attestation manifest per image (platform `unknown/unknown`,
    annotated `vnd.docker.reference.type: attestation-manifest`): all untagged. Then the OCI
    image index naming them by digest, under `tag`. Children go first: ECR refuses an index
    whose manifests are not in the repository (ReferencedImagesNotFoundException, see
    sandbox.ecr). Each platform's image runs the same `service/` code here; its layer (and so
    its digest) differs per platform, as a real cross-build's does. `build` makes another
    build of the same code (new digests), like `push_build`.

    Returns {"digest": the index digest, "media_type", "manifests": {platform: digest},
    "attestations": [digest, ...]}."""
    tree, salt = tree_hash(root), build or tag
    entries, manifests, attestations = [], {}, []
    for plat in platforms:
        os_name, arch, *variant = plat.split("/")
        layer = hashlib.sha256(f"{tree}:{plat}".encode()).hexdigest()
        config = _sha(f"config:{layer}:{salt}")
        body = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": _OCI_CONFIG, "size": 0, "digest": config},
            "layers": [{"mediaType": _OCI_LAYER, "size": 0, "digest": f"sha256:{layer}"}],
        }, sort_keys=True, separators=(",", ":"))
        manifests[plat] = _put(ecr, repository, body, OCI_MANIFEST_MEDIA_TYPE)
        platform = {"architecture": arch, "os": os_name} | (
            {"variant": variant[0]} if variant else {})
        entries.append(_descriptor(OCI_MANIFEST_MEDIA_TYPE, body, platform=platform))
    if provenance:
        for plat, digest in list(manifests.items()):
            body = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST_MEDIA_TYPE,
                "config": {"mediaType": _OCI_CONFIG, "size": 0,
                           "digest": _sha(f"attestation-config:{digest}")},
                "layers": [{"mediaType": "application/vnd.in-toto+json", "size": 0,
                            "digest": _sha(f"provenance:{digest}:{plat}"),
                            "annotations": {
                                "in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}}],
            }, sort_keys=True, separators=(",", ":"))
            attestations.append(_put(ecr, repository, body, OCI_MANIFEST_MEDIA_TYPE))
            entries.append(_descriptor(
                OCI_MANIFEST_MEDIA_TYPE, body,
                annotations={"vnd.docker.reference.digest": digest,
                             "vnd.docker.reference.type": "attestation-manifest"},
                platform={"architecture": "unknown", "os": "unknown"}))
    index = json.dumps({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": entries},
                       sort_keys=True, separators=(",", ":"))
    digest = _put(ecr, repository, index, INDEX_MEDIA_TYPE, tag=tag)
    # ECS reports (and the runtime looks the code up by) the index digest; a platform
    # manifest pinned by its own digest runs the same code.
    snapshot(root, [digest, *manifests.values()])
    return {"digest": digest, "media_type": INDEX_MEDIA_TYPE, "manifests": manifests,
            "attestations": attestations}


# -- the flow-run image (`papyrus-ops`): this checkout's code ----------------------------------
ROOT = SERVICE_DIR.parent
OPS_REPOSITORY = "papyrus-ops"
# What the root Dockerfile copies (/opt/papyrus-ops); tests and caches left out.
OPS_CONTEXT = ("ground", "artifacts", "tasks", "flows", "papyrus_ops", "deployments", "service",
               "pyproject.toml", "constraints.txt", "prefect.yaml")


def ops_tree_hash(root: Path = ROOT) -> str:
    """SHA-256 over the flow-run image's build context: this checkout's code."""
    h = hashlib.sha256()
    for name in OPS_CONTEXT:
        path = root / name
        h.update(f"{name}\0".encode())
        if path.is_dir():
            h.update(tree_hash(path).encode())
        elif path.exists():
            h.update(path.read_bytes())
    return h.hexdigest()


def push_ops(ecr, tags: list[str], repository: str = OPS_REPOSITORY, root: Path = ROOT) -> str:
    """Put the `papyrus-ops` flow-run image (this checkout) into ECR; returns its digest."""
    layer = ops_tree_hash(root)
    body = json.loads(manifest(SERVICE_DIR))
    body["layers"] = [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                       "size": 0, "digest": f"sha256:{layer}"}]
    body["config"]["digest"] = "sha256:" + hashlib.sha256(f"config:{layer}".encode()).hexdigest()
    return _put_tagged(ecr, repository, json.dumps(body, sort_keys=True, separators=(",", ":")),
                       tags)
