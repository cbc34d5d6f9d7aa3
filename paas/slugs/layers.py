"""The layer store: content-addressed, deterministic tar layers in an OCI image layout.

    <layers_dir>/oci-layout, index.json
    <layers_dir>/blobs/sha256/<hex>       an uncompressed tar (LAYER_MEDIA_TYPE)
    <layers_dir>/unpacked/<uid>/<hex>/    an extracted copy owned by uid, an overlayfs lower dir

Every write goes to a temporary name first and is renamed into place, so a reader never sees
half a blob or half an unpacked tree.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from paas.errors import Invalid, PaasError
from paas.settings import Settings

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_CHUNK = 1024 * 1024


def digest_hex(digest: str) -> str:
    match = _DIGEST.match(digest)
    if not match:
        raise Invalid(f"not a layer digest: {digest!r} (expected sha256:<64 hex digits>)")
    return match.group(1)


class _HashingWriter:
    """A write-only file object that hashes what passes through it."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.out.write(data)


class LayerStore:
    def __init__(self, settings: Settings) -> None:
        self.root = settings.layers_dir
        self.blobs = self.root / "blobs" / "sha256"

    def _init_layout(self) -> None:
        self.blobs.mkdir(parents=True, exist_ok=True)
        for name, content in (
            ("oci-layout", {"imageLayoutVersion": "1.0.0"}),
            ("index.json", {"schemaVersion": 2, "manifests": []}),
        ):
            path = self.root / name
            if not path.exists():
                _write_atomic(path, json.dumps(content).encode())

    def blob_path(self, digest: str) -> Path:
        return self.blobs / digest_hex(digest)

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def add_dir(self, src: Path, prefix: str = "", exclude: frozenset[str] = frozenset()) -> str:
        """Store a deterministic tar of src with every entry under prefix; return its digest.

        exclude names top-level entries of src to leave out (e.g. ".git", ".layers").
        """
        return self.put_dir(src, prefix, exclude)[0]

    def put_dir(
        self, src: Path, prefix: str = "", exclude: frozenset[str] = frozenset()
    ) -> tuple[str, bool]:
        """add_dir, also telling whether the blob is new to the store (False: it was there)."""
        self._init_layout()
        parts = _prefix_parts(prefix)
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=self.blobs)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                writer = _HashingWriter(out)
                with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    _write_entries(tar, src, parts, exclude)
                out.flush()
                os.fsync(out.fileno())
            hexdigest = writer.sha.hexdigest()
            final = self.blobs / hexdigest
            created = not final.exists()
            if created:
                tmp.chmod(0o644)
                tmp.rename(final)
            else:
                tmp.unlink()
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return f"sha256:{hexdigest}", created

    def unpacked(self, digest: str, uid: int) -> Path:
        """An extracted copy of the layer owned by uid (uid:uid), for an overlayfs lower dir."""
        hexdigest = digest_hex(digest)
        blob = self.blobs / hexdigest
        if not blob.is_file():
            raise PaasError(f"layer {digest} is not in the layer store at {self.root}")
        base = self.root / "unpacked" / str(uid)
        final = base / hexdigest
        if final.is_dir():
            return final
        base.mkdir(parents=True, exist_ok=True)
        for parent in (self.root / "unpacked", base):
            parent.chmod(0o755)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=base))
        try:
            with tarfile.open(blob, mode="r:") as tar:
                _extract_all(tar, tmp, uid)
            tmp.chmod(0o755)
            os.chown(tmp, uid, uid)
            try:
                tmp.rename(final)
            except OSError:
                if not final.is_dir():
                    raise
                shutil.rmtree(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    tmp.rename(path)


def _prefix_parts(prefix: str) -> list[str]:
    parts = [p for p in PurePosixPath(prefix).parts if p not in ("", ".", "/")]
    if prefix.startswith("/") or ".." in parts:
        raise Invalid(f"layer prefix must be a relative path inside /app: {prefix!r}")
    return parts


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _dir_info(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    return _normalized(info)


def _walk(src: Path, exclude: frozenset[str]) -> Iterator[tuple[Path, str]]:
    """(host path, relative posix name) of every entry under src, sorted, depth first."""

    def visit(directory: Path, rel: str) -> Iterator[tuple[Path, str]]:
        for name in sorted(os.listdir(directory)):
            if not rel and name in exclude:
                continue
            path = directory / name
            name_rel = f"{rel}/{name}" if rel else name
            yield path, name_rel
            if stat.S_ISDIR(path.lstat().st_mode):
                yield from visit(path, name_rel)

    yield from visit(src, "")


def _write_entries(
    tar: tarfile.TarFile, src: Path, parts: list[str], exclude: frozenset[str]
) -> None:
    for i in range(len(parts)):
        tar.addfile(_dir_info("/".join(parts[: i + 1])))
    base = "/".join(parts)
    for path, rel in _walk(src, exclude):
        name = f"{base}/{rel}" if base else rel
        st = path.lstat()
        info = tarfile.TarInfo(name)
        info.mode = stat.S_IMODE(st.st_mode) & 0o777
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
            tar.addfile(_normalized(info))
        elif stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(path)
            tar.addfile(_normalized(info))
        elif stat.S_ISREG(st.st_mode):
            info.size = st.st_size
            with path.open("rb") as f:
                tar.addfile(_normalized(info), f)
        # Devices, fifos and sockets have no place in a slug and are left out.


def _check_member(member: tarfile.TarInfo, symlinks: set[str]) -> PurePosixPath:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or not name.parts:
        raise PaasError(f"refusing layer entry with an unsafe path: {member.name!r}")
    for i in range(1, len(name.parts) + 1):
        if "/".join(name.parts[:i]) in symlinks:
            raise PaasError(f"refusing layer entry at or below a symlink: {member.name!r}")
    if not (member.isdir() or member.isreg() or member.issym()):
        raise PaasError(f"refusing layer entry of an unsupported type: {member.name!r}")
    return name


def _extract_all(tar: tarfile.TarFile, dest: Path, uid: int) -> None:
    symlinks: set[str] = set()
    for member in tar:
        rel = _check_member(member, symlinks)
        target = dest.joinpath(*rel.parts)
        if member.isdir():
            _make_parents(dest, rel, uid)
            target.mkdir(mode=0o755, exist_ok=True)
            target.chmod(0o755)
            os.chown(target, uid, uid)
        elif member.issym():
            _make_parents(dest, rel, uid)
            os.symlink(member.linkname, target)
            os.lchown(target, uid, uid)
            symlinks.add(str(rel))
        else:
            _make_parents(dest, rel, uid)
            _extract_file(tar, member, target, uid)


def _make_parents(dest: Path, rel: PurePosixPath, uid: int) -> None:
    path = dest
    for part in rel.parts[:-1]:
        path = path / part
        if not path.is_dir():
            path.mkdir(mode=0o755)
            os.chown(path, uid, uid)


def _extract_file(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, uid: int) -> None:
    source = tar.extractfile(member)
    assert source is not None
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out, _CHUNK)
        os.fchown(out.fileno(), uid, uid)
        os.fchmod(out.fileno(), (member.mode & 0o777) | 0o444)
