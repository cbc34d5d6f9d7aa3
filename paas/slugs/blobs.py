"""Where slugs are kept: blobs by digest (layers, image configs, manifests) and manifests by
name, in an OCI image layout. `Blobs` is the interface a store backend implements (this host's
filesystem today: `FilesystemBlobs`; an OCI registry next); `paas/slugs/layers.py` builds
and unpacks layers over it.

    <root>/oci-layout, index.json    one manifest per slug, named "<app>:<build id>"
    <root>/blobs/sha256/<hex>        every blob, written under a temporary name and renamed
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from paas.errors import Invalid, PaasError

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")


def digest_hex(digest: str) -> str:
    match = _DIGEST.match(digest)
    if not match:
        raise Invalid(f"not a layer digest: {digest!r} (expected sha256:<64 hex digits>)")
    return match.group(1)


def is_digest(text: str) -> bool:
    return bool(_DIGEST.match(text))


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    mtime: float  # when it was last written or reused: gc spares young blobs


class BlobUpload(Protocol):
    """A blob being written: bytes in, then committed under the digest its writer computed."""

    def write(self, data: bytes) -> int: ...

    def flush(self) -> None: ...


class Blobs(Protocol):
    """Blobs by digest and manifests by name: put, get, has."""

    def has(self, digest: str) -> bool: ...

    def info(self, digest: str) -> BlobInfo: ...

    def open(self, digest: str) -> BinaryIO:
        """The blob's bytes; PaasError when it is not in the store."""
        ...

    def upload(self) -> AbstractContextManager[BlobUpload]:
        """A blob to write: `commit(upload, digest)` keeps it; leaving the block without
        committing (an error) drops it."""
        ...

    def commit(self, upload: BlobUpload, digest: str) -> bool:
        """Keeps what was written as `digest`; False when the store had it already."""
        ...

    def put(self, data: bytes) -> str: ...

    def touch(self, digest: str) -> None:
        """Young again: a gc running meanwhile leaves it alone."""
        ...

    def remove(self, digest: str) -> None: ...

    def each(self) -> Iterator[BlobInfo]: ...

    def name_manifest(self, name: str, digest: str, size: int) -> None:
        """Makes `name` (app:build) point at the manifest `digest`."""
        ...

    def prune_manifests(self, keep: Callable[[str], bool]) -> None:
        """Drops the names of manifests whose digest `keep` refuses."""
        ...


class _FileUpload:
    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        self.path = Path(name)
        self.file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> int:
        return self.file.write(data)

    def flush(self) -> None:
        pass


class FilesystemBlobs:
    """`Blobs` in a directory of this host, shared by the build workers and the agent."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "blobs" / "sha256"

    def path(self, digest: str) -> Path:
        return self.dir / digest_hex(digest)

    def has(self, digest: str) -> bool:
        return is_digest(digest) and self.path(digest).is_file()

    def info(self, digest: str) -> BlobInfo:
        st = self.path(digest).stat()
        return BlobInfo(digest, st.st_size, st.st_mtime)

    def open(self, digest: str) -> BinaryIO:
        try:
            return self.path(digest).open("rb")
        except FileNotFoundError:
            raise PaasError(f"layer {digest} is not in the layer store at {self.root}") from None

    @contextmanager
    def upload(self) -> Iterator[_FileUpload]:
        self._init_layout()
        upload = _FileUpload(self.dir)
        try:
            yield upload
        finally:
            try:
                upload.file.close()  # flushes: on a full disk it fails again
            finally:
                upload.path.unlink(missing_ok=True)  # gone already once committed

    def commit(self, upload: BlobUpload, digest: str) -> bool:
        assert isinstance(upload, _FileUpload)
        upload.file.flush()
        os.fsync(upload.file.fileno())
        upload.file.close()
        final = self.path(digest)
        if final.exists():
            os.utime(final)
            return False
        upload.path.chmod(0o644)
        upload.path.rename(final)
        return True

    def put(self, data: bytes) -> str:
        self._init_layout()
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        final = self.path(digest)
        if final.exists():
            os.utime(final)
        else:
            write_atomic(final, data)
        return digest

    def touch(self, digest: str) -> None:
        os.utime(self.path(digest))

    def remove(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def each(self) -> Iterator[BlobInfo]:
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.iterdir()):
            if not path.name.startswith("."):
                st = path.stat()
                yield BlobInfo(f"sha256:{path.name}", st.st_size, st.st_mtime)

    def name_manifest(self, name: str, digest: str, size: int) -> None:
        with self._index() as index:
            index["manifests"] = [m for m in index["manifests"]
                                  if m.get("annotations", {}).get(REF_NAME) != name]
            index["manifests"].append({"mediaType": MANIFEST_MEDIA_TYPE, "digest": digest,
                                       "size": size, "annotations": {REF_NAME: name}})

    def prune_manifests(self, keep: Callable[[str], bool]) -> None:
        if not (self.root / "index.json").exists():
            return
        with self._index() as index:
            index["manifests"] = [m for m in index["manifests"] if keep(m.get("digest", ""))]

    def _init_layout(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for name, content in (
            ("oci-layout", {"imageLayoutVersion": "1.0.0"}),
            ("index.json", {"schemaVersion": 2, "manifests": []}),
        ):
            path = self.root / name
            if not path.exists():
                write_atomic(path, json.dumps(content).encode())

    def _index(self) -> _IndexLock:
        self._init_layout()
        return _IndexLock(self.root)


class _IndexLock:
    """index.json, read and rewritten under an exclusive lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.index: dict[str, Any] = {}

    def __enter__(self) -> dict[str, Any]:
        self.handle = open(self.root / ".index.lock", "a")
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        self.index = json.loads((self.root / "index.json").read_text())
        return self.index

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                write_atomic(self.root / "index.json", json.dumps(self.index).encode())
        finally:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        tmp.write_bytes(data)
        tmp.chmod(0o644)
        tmp.rename(path)
    except OSError:  # a full disk: no half-written file stays behind
        tmp.unlink(missing_ok=True)
        raise
