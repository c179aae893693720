"""The archive's work folder: checkpoint, gzip members, lock; and the incremental state.

Layout (under the evidence root)::

    cloudtrail/.work/<env>/checkpoint.json     what is durably archived (see below)
    cloudtrail/.work/<env>/events.jsonl.gz     all events, a sequence of gzip members
    cloudtrail/.work/<env>/papyrus.jsonl.gz    the Papyrus-related subset, same members
    cloudtrail/.work/<env>/prior.json          incremental: the event ids earlier archives
                                               hold in the overlap (skipped, never re-archived)
    cloudtrail/.work/<env>/lock                held (flock) by the one run using the folder
    cloudtrail/state.json                      the last archive's covered window (incremental)

Durability protocol: the two files are only ever appended to, one gzip *member* at a time. A
member is closed (trailer written), both files are flushed and fsync'ed, and only then is
the checkpoint rewritten (tmp file + fsync + rename) with the files' new sizes. A run killed
at any point therefore leaves files whose first `offsets` bytes are complete members matching
the checkpoint; whatever follows is a partial member of work the checkpoint does not claim.
Resuming truncates both files to `offsets` and continues from the checkpoint's cursor.
Concatenated gzip members are one valid gzip stream (RFC 1952 §2.2; `gzip -d`, `zcat` and
Python's `gzip` read them all).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tasks.cloudtrail.window import epoch

CHECKPOINT_VERSION = 2  # 2: slices carry their region and event source


class ArchiveBusyError(RuntimeError):
    """Another run holds the work folder."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class MemberWriter:
    """Appends gzip members to one file; `commit()` ends the member and makes it durable."""

    def __init__(self, path: Path, compresslevel: int = 6):
        self.path = path
        self.compresslevel = compresslevel
        self._f = open(path, "ab")  # noqa: SIM115 - closed in close()
        self._gz: gzip.GzipFile | None = None
        self.bytes_in = 0

    def write(self, data: bytes) -> None:
        if self._gz is None:
            # mtime=0 and no file name: a member's bytes depend only on its content.
            self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._f, mtime=0,
                                     compresslevel=self.compresslevel)
        self._gz.write(data)
        self.bytes_in += len(data)

    def commit(self) -> int:
        """Close the open member (if any), fsync, and return the durable size of the file."""
        if self._gz is not None:
            self._gz.close()  # writes the trailer; leaves the file open
            self._gz = None
        self._f.flush()
        os.fsync(self._f.fileno())
        return self._f.tell()

    def close(self) -> None:
        """Close without committing: an open member stays partial (truncated on resume)."""
        try:
            if self._gz is not None:
                # Flush what zlib holds so nothing lingers, but it is not claimed anywhere.
                with contextlib.suppress(Exception):
                    self._gz.close()
                self._gz = None
        finally:
            self._f.close()


class WorkDir:
    """The resumable work folder of one environment's archive run."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.checkpoint_path = self.root / "checkpoint.json"
        self.events_path = self.root / "events.jsonl.gz"
        self.papyrus_path = self.root / "papyrus.jsonl.gz"
        self.prior_path = self.root / "prior.json"
        self.lock_path = self.root / "lock"

    @classmethod
    def for_env(cls, evidence_root: Path | str, env: str) -> WorkDir:
        return cls(Path(evidence_root) / "cloudtrail" / ".work" / env)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ArchiveBusyError(
                    f"another CloudTrail archive run is using {self.root}") from None
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def load(self) -> dict[str, Any] | None:
        try:
            cp = json.loads(self.checkpoint_path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # a torn checkpoint cannot happen (atomic rename); be safe anyway
        if not isinstance(cp, dict) or cp.get("version") != CHECKPOINT_VERSION:
            return None
        return cp

    def save(self, cp: dict[str, Any]) -> None:
        write_json_atomic(self.checkpoint_path, cp)

    def start(self, cp: dict[str, Any], prior_ids: Iterable[str] = ()) -> None:
        """A fresh run: empty files, the ids earlier archives already hold in the overlap,
        and the initial checkpoint (written last: it is what makes the folder resumable)."""
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.prior_path, sorted(set(prior_ids)))
        for p in (self.events_path, self.papyrus_path):
            # Unlink first: a finished run's files may be hard-linked into its evidence bundle,
            # and opening them for writing would truncate the evidence.
            p.unlink(missing_ok=True)
            with open(p, "xb") as f:
                f.flush()
                os.fsync(f.fileno())
        cp = {**cp, "offsets": {"events": 0, "papyrus": 0}}
        self.save(cp)

    def prior_ids(self) -> frozenset[str]:
        """The event ids earlier archives hold inside this run's overlap (empty without)."""
        try:
            return frozenset(json.loads(self.prior_path.read_text()))
        except (FileNotFoundError, ValueError):
            return frozenset()

    def archived_since(self, cp: dict[str, Any], since: float) -> list[tuple[float, str]]:
        """(EventTime, EventId) of every event this run archived at or after `since`.

        Only the slices that reach past `since` are read: each completed slice records the
        size of the events file at its end, so a slice's lines are the gzip members between
        the previous slice's end and its own (members are independent: any member boundary
        is a valid start)."""
        out: list[tuple[float, str]] = []
        start = 0
        with open(self.events_path, "rb") as f:
            for entry in cp["completed"]:
                end = int(entry["offsets"]["events"])
                if end > start and epoch(entry["until"]) > since:
                    f.seek(start)
                    data = gzip.decompress(f.read(end - start))
                    for line in data.splitlines():
                        rec = json.loads(line)
                        t = epoch(rec["EventTime"])
                        if t >= since:
                            out.append((t, rec["EventId"]))
                start = end
        return out

    def truncate(self, cp: dict[str, Any]) -> dict[str, int]:
        """Cut both files back to what the checkpoint claims; returns the bytes discarded."""
        cut = {}
        for key, path in (("events", self.events_path), ("papyrus", self.papyrus_path)):
            offset = int(cp["offsets"][key])
            size = path.stat().st_size if path.exists() else -1
            if size < offset:
                raise RuntimeError(f"{path} is shorter ({size} bytes) than its checkpoint "
                                   f"({offset} bytes): the work folder was damaged")
            if size > offset:
                with open(path, "r+b") as f:
                    f.truncate(offset)
                    f.flush()
                    os.fsync(f.fileno())
            cut[key] = size - offset
        return cut

    def writers(self, compresslevel: int = 6) -> tuple[MemberWriter, MemberWriter]:
        return (MemberWriter(self.events_path, compresslevel),
                MemberWriter(self.papyrus_path, compresslevel))

    def remove(self) -> None:
        for p in (self.events_path, self.papyrus_path, self.checkpoint_path, self.prior_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def discard(self) -> None:
        """Drop an abandoned run (kept: the lock file, so a concurrent run stays excluded)."""
        self.remove()
        for p in self.root.glob("*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


# -- incremental state ----------------------------------------------------------------------
STATE_NAME = "state.json"


def state_path(evidence_root: Path | str, env: str) -> Path:
    return Path(evidence_root) / "cloudtrail" / f"{STATE_NAME.removesuffix('.json')}-{env}.json"


def read_local_state(evidence_root: Path | str, env: str) -> dict[str, Any] | None:
    try:
        data = json.loads(state_path(evidence_root, env).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("covered_until") else None


def write_local_state(evidence_root: Path | str, env: str, state: dict[str, Any]) -> Path:
    path = state_path(evidence_root, env)
    write_json_atomic(path, state)
    return path


def copy_durably(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        shutil.copyfileobj(fi, fo, 1 << 20)
        fo.flush()
        os.fsync(fo.fileno())
