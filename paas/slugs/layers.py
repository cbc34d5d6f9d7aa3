"""The layer store: content-addressed, deterministic layers, kept as blobs of an OCI image
layout (`paas/slugs/blobs.py`: the `Blobs` interface, this host's filesystem today).

    <layers_dir>/oci-layout, index.json    one manifest per slug, named "<app>:<build id>"
    <layers_dir>/blobs/sha256/<hex>       layers (gzip-compressed tars), image configs, manifests
    <layers_dir>/unpacked/<uid>/<hex>/    a layer extracted and owned by uid, an overlayfs lower dir
    <layers_dir>/memo/                    tree signature -> digest, so an untouched layer is not
                                          tarred again

Layer tars are deterministic (sorted entries, mtime 0, owner 0:0, gzip without name or time), so
the same tree gives the same digest. Every write goes to a temporary name first and is renamed
into place, so a reader never sees half a blob or half an unpacked tree.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from paas import safefs
from paas.errors import Invalid, PaasError
from paas.settings import Settings
from paas.slugs.blobs import (
    MANIFEST_MEDIA_TYPE,
    Blobs,
    BlobUpload,
    FilesystemBlobs,
    digest_hex,
    is_digest,
    write_atomic,
)

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
_CHUNK = 1024 * 1024
_GZIP_LEVEL = 6
# A file may have this many bytes more than its blocks hold (tail, inline data) before it
# counts as sparse: a hole would be packed, and unpacked, as real zeros.
_SPARSE_SLACK = 1024 * 1024

Keep = Callable[[str, Path], bool]


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, out: BinaryIO | gzip.GzipFile | BlobUpload) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        pass


@dataclass(frozen=True)
class StoredLayer:
    digest: str  # of the compressed blob: the name in the store and in the manifest
    diff_id: str  # of the uncompressed tar, as OCI image configs list them
    size: int  # compressed bytes
    created: bool  # False: the blob was in the store already (no new bytes)


@dataclass(frozen=True)
class GcResult:
    removed: list[str]
    bytes_freed: int
    kept: int


class LayerStore:
    def __init__(self, settings: Settings, blobs: Blobs | None = None) -> None:
        self.root = settings.layers_dir
        self.blobs: Blobs = blobs or FilesystemBlobs(self.root)
        self.memo_dir = self.root / "memo"
        # No layer can hold more than a build could write: its workspace and its cache.
        self.size_limit = (settings.build_disk_mb + settings.build_cache_mb) * 1024 * 1024

    def has(self, digest: str) -> bool:
        return self.blobs.has(digest)

    def size(self, digest: str) -> int:
        return self.blobs.info(digest).size

    def add_dir(self, src: Path, prefix: str = "", exclude: frozenset[str] = frozenset()) -> str:
        """Store a deterministic tar of src with every entry under prefix; return its digest.

        exclude names top-level entries of src to leave out (e.g. ".git", ".layers").
        """
        return self.put_dir(src, prefix, exclude).digest

    def put_dir(
        self,
        src: Path,
        prefix: str = "",
        exclude: frozenset[str] = frozenset(),
        keep: Keep | None = None,
        memo: str | None = None,
    ) -> StoredLayer:
        """add_dir, also telling whether the blob is new; keep(rel, path) filters entries.

        With a memo key, an unchanged tree (same names, modes, sizes, mtimes and inodes as the
        last time under that key) is not tarred again: its recorded digest is returned.
        """
        parts = _prefix_parts(prefix)
        tree = _tree_signature(src, parts, exclude, keep) if memo else ""
        remembered = self._recall(memo, tree) if memo else None
        if remembered is not None:
            return remembered
        stored = self._write_layer(src, parts, exclude, keep)
        if memo:
            self._remember(memo, tree, stored)
        return stored

    def _write_layer(
        self, src: Path, parts: list[str], exclude: frozenset[str], keep: Keep | None
    ) -> StoredLayer:
        with self.blobs.upload() as upload:
            compressed = _HashingWriter(upload)
            with gzip.GzipFile(filename="", mode="wb", fileobj=compressed,
                               compresslevel=_GZIP_LEVEL, mtime=0) as gz:
                plain = _HashingWriter(gz)
                with tarfile.open(fileobj=plain, mode="w|",  # type: ignore[call-overload]
                                  format=tarfile.PAX_FORMAT) as tar:
                    _write_entries(tar, src, parts, exclude, keep,
                                   _Budget(self.size_limit, "pack"))
            digest = f"sha256:{compressed.sha.hexdigest()}"
            created = self.blobs.commit(upload, digest)
        return StoredLayer(digest=digest, diff_id=f"sha256:{plain.sha.hexdigest()}",
                           size=compressed.size, created=created)

    def _recall(self, memo: str, tree: str) -> StoredLayer | None:
        try:
            record = json.loads((self.memo_dir / _memo_name(memo)).read_text())
        except (OSError, ValueError):
            return None
        if record.get("tree") != tree or not self.has(record.get("digest", "")):
            return None
        self.blobs.touch(record["digest"])
        return StoredLayer(record["digest"], record["diff_id"], record["size"], created=False)

    def _remember(self, memo: str, tree: str, stored: StoredLayer) -> None:
        self.memo_dir.mkdir(mode=0o700, exist_ok=True)
        record = {"tree": tree, "digest": stored.digest, "diff_id": stored.diff_id,
                  "size": stored.size}
        write_atomic(self.memo_dir / _memo_name(memo), json.dumps(record).encode())

    def put_json(self, content: dict[str, Any]) -> tuple[str, int]:
        """A JSON blob (image config, manifest), canonical so equal content has one digest."""
        data = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
        return self.blobs.put(data), len(data)

    def read_json(self, digest: str) -> dict[str, Any]:
        with self.blobs.open(digest) as blob:
            return json.loads(blob.read())

    def write_image(self, layers: list[StoredLayer], config: dict[str, Any],
                    labels: dict[str, str], ref_name: str) -> str:
        """An image config and manifest for a slug, named ref_name in index.json."""
        image_config = {
            "architecture": "amd64" if os.uname().machine == "x86_64" else os.uname().machine,
            "os": "linux",
            "config": {**config, "Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        }
        config_digest, config_size = self.put_json(image_config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest,
                       "size": config_size},
            "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": layer.digest,
                        "size": layer.size} for layer in layers],
            "annotations": {"org.opencontainers.image.ref.name": ref_name},
        }
        digest, size = self.put_json(manifest)
        self.blobs.name_manifest(ref_name, digest, size)
        return digest

    def unpacked(self, digest: str, uid: int) -> Path:
        """An extracted copy of the layer owned by uid (uid:uid), for an overlayfs lower dir."""
        hexdigest = digest_hex(digest)
        if not self.blobs.has(digest):
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
            with self.blobs.open(digest) as blob, tarfile.open(fileobj=blob, mode="r:*") as tar:
                _extract_all(tar, tmp, uid, _Budget(self.size_limit, "unpack"))
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

    # ---- garbage collection ------------------------------------------------------------

    def gc(self, keep: set[str], min_age: float) -> GcResult:
        """Remove blobs (and their unpacked copies) not in keep, nor named by a kept manifest.

        Blobs younger than min_age seconds stay: a build that is running has written (or
        touched) them but no release names them yet.
        """
        wanted = self._expand(keep)
        cutoff = time.time() - min_age
        removed, freed = [], 0
        for blob in list(self.blobs.each()):
            if blob.digest in wanted or blob.mtime > cutoff:
                continue
            self.blobs.remove(blob.digest)
            removed.append(blob.digest)
            freed += blob.size
        self._drop_unpacked({digest_hex(d) for d in removed})
        self.blobs.prune_manifests(lambda digest: digest in wanted or self.has(digest))
        return GcResult(removed, freed, len(wanted))

    def _expand(self, keep: set[str]) -> set[str]:
        wanted = {d for d in keep if is_digest(d)}
        for digest in list(wanted):
            if not self.has(digest) or self.size(digest) > 1024 * 1024:
                continue
            try:
                content = self.read_json(digest)
            except (ValueError, UnicodeDecodeError):
                continue  # a layer, not a manifest
            if isinstance(content, dict) and content.get("mediaType") == MANIFEST_MEDIA_TYPE:
                wanted.add(content["config"]["digest"])
                wanted.update(layer["digest"] for layer in content.get("layers", []))
        return wanted

    def _drop_unpacked(self, hexes: set[str]) -> None:
        base = self.root / "unpacked"
        if not base.is_dir() or not hexes:
            return
        for uid_dir in base.iterdir():
            for hexdigest in hexes & {p.name for p in uid_dir.iterdir()}:
                doomed = uid_dir / f".gc-{hexdigest}"
                (uid_dir / hexdigest).rename(doomed)
                shutil.rmtree(doomed, ignore_errors=True)


def _memo_name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _tree_signature(src: Path, parts: list[str], exclude: frozenset[str],
                    keep: Keep | None) -> str:
    sha = hashlib.sha256("/".join(parts).encode())
    for entry in _walk(src, parts, exclude):
        rel, st = entry.rel, entry.st
        if keep is not None and not keep(rel, src / rel):
            continue
        link = entry.read_link() if stat.S_ISLNK(st.st_mode) else ""
        sha.update(f"{rel}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{link}\n"
                   .encode())
    return sha.hexdigest()


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


def _walk(src: Path, parts: list[str], exclude: frozenset[str]) -> Iterator[safefs.Entry]:
    """Every entry under src, sorted, depth first. A build wrote src (its parent is root's):
    a symlink is recorded as a symlink and never followed, a file is read through its
    directory's fd (openat). A refusal names the entry as the build sees it, below /app."""
    try:
        yield from safefs.walk(src.parent, src.name, exclude)
    except safefs.UnsafePath as err:
        shown = "/".join(["/app", *parts, err.rel] if err.rel != src.name else ["/app", *parts])
        raise PaasError(f"refusing to pack {shown}: it {err.reason}") from None


class _Budget:
    """The bytes of file content a layer may still hold (0: no limit)."""

    def __init__(self, limit: int, verb: str) -> None:
        self.limit = limit
        self.left = limit
        self.verb = verb

    def spend(self, name: str, size: int) -> None:
        if not self.limit:
            return
        self.left -= size
        if self.left < 0:
            raise PaasError(
                f"refusing to {self.verb} a layer whose files add up to more than "
                f"{self.limit // (1024 * 1024)} MB (reached at {name}), more than a build "
                f"may write (PAAS_BUILD_DISK_MB + PAAS_BUILD_CACHE_MB)")


def _refuse_sparse(name: str, st: os.stat_result) -> None:
    if st.st_size > st.st_blocks * 512 + _SPARSE_SLACK:
        raise PaasError(
            f"refusing to pack {name}: a sparse file of {st.st_size // (1024 * 1024)} MB with "
            f"{st.st_blocks * 512 // (1024 * 1024)} MB on disk (made by truncate or a seek "
            f"past its end); its holes would become real bytes. Remove it or write it fully")


def _write_entries(
    tar: tarfile.TarFile, src: Path, parts: list[str], exclude: frozenset[str],
    keep: Keep | None = None, budget: _Budget | None = None,
) -> None:
    budget = budget or _Budget(0, "pack")
    for i in range(len(parts)):
        tar.addfile(_dir_info("/".join(parts[: i + 1])))
    base = "/".join(parts)
    for entry in _walk(src, parts, exclude):
        rel, st = entry.rel, entry.st
        if keep is not None and not keep(rel, src / rel):
            continue
        name = f"{base}/{rel}" if base else rel
        info = tarfile.TarInfo(name)
        info.mode = stat.S_IMODE(st.st_mode) & 0o777
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
            tar.addfile(_normalized(info))
        elif stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = entry.read_link()
            tar.addfile(_normalized(info))
        elif stat.S_ISREG(st.st_mode):
            _refuse_sparse(f"/app/{name}", st)
            budget.spend(f"/app/{name}", st.st_size)
            info.size = st.st_size
            with os.fdopen(_open_entry(entry), "rb") as f:
                tar.addfile(_normalized(info), f)
        # Devices, fifos and sockets have no place in a slug and are left out.


def _open_entry(entry: safefs.Entry) -> int:
    try:
        return entry.open_file()
    except safefs.UnsafePath as err:
        raise PaasError(f"refusing to pack {err}") from None


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


def _extract_all(tar: tarfile.TarFile, dest: Path, uid: int, budget: _Budget) -> None:
    symlinks: set[str] = set()
    for member in tar:
        rel = _check_member(member, symlinks)
        budget.spend(member.name, member.size if member.isreg() else 0)
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
        try:
            st = path.lstat()
        except FileNotFoundError:
            path.mkdir(mode=0o755)
            os.chown(path, uid, uid)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise PaasError(f"refusing layer entry below a non-directory: {rel}")


def _extract_file(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, uid: int) -> None:
    source = tar.extractfile(member)
    assert source is not None
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out, _CHUNK)
        os.fchown(out.fileno(), uid, uid)
        os.fchmod(out.fileno(), (member.mode & 0o777) | 0o444)
