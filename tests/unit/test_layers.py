from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from paas.errors import PaasError
from paas.settings import Settings
from paas.slugs.layers import LayerStore

UID = 10077


@pytest.fixture
def store(tmp_path: Path) -> LayerStore:
    return LayerStore(Settings(home=tmp_path / "home"))


def make_tree(root: Path) -> Path:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "app.py").write_text("print('hi')\n")
    (root / "pkg" / "sub" / "data.txt").write_text("data\n")
    run = root / "run.sh"
    run.write_text("#!/bin/sh\necho run\n")
    run.chmod(0o755)
    (root / "link").symlink_to("pkg/sub/data.txt")
    (root / "abs-link").symlink_to("/usr/bin/python3")
    os.mkfifo(root / "fifo")
    return root


def test_same_tree_same_digest_even_after_touching(store: LayerStore, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    first = store.add_dir(src, "")
    for path in [src, *src.rglob("*")]:
        os.utime(path, (1, 1), follow_symlinks=False)
    assert store.add_dir(src, "") == first
    assert first.startswith("sha256:") and store.has(first)
    assert (store.root / "oci-layout").is_file()
    assert not [p for p in store.blobs.dir.iterdir() if p.name.startswith(".tmp")]


def test_changed_content_or_mode_changes_digest(store: LayerStore, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    first = store.add_dir(src, "")
    (src / "app.py").write_text("print('bye')\n")
    second = store.add_dir(src, "")
    assert second != first
    (src / "app.py").chmod(0o700)
    assert store.add_dir(src, "") != second


def test_entries_are_normalized_and_prefixed(store: LayerStore, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    digest = store.add_dir(src, ".layers/python/venv")
    with tarfile.open(store.blobs.path(digest)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[:3] == [".layers", ".layers/python", ".layers/python/venv"]
    assert ".layers/python/venv/pkg/sub/data.txt" in names
    assert not any("fifo" in n for n in names)
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
    link = next(m for m in members if m.name.endswith("/abs-link"))
    assert link.issym() and link.linkname == "/usr/bin/python3"


def test_links_to_host_files_are_packed_as_links_never_read(store: LayerStore,
                                                            tmp_path: Path) -> None:
    canary = tmp_path / "host" / "secret"
    canary.parent.mkdir()
    canary.write_text("host-secret\n")
    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    (src / "file-link").symlink_to(canary)
    (src / "dir-link").symlink_to(canary.parent)
    (src / "dir" / "file").write_text("mine\n")
    with tarfile.open(store.blobs.path(store.add_dir(src, ""))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == ["dir", "dir-link", "dir/file", "file-link"]
        assert members["file-link"].issym() and members["file-link"].linkname == str(canary)
        assert members["dir-link"].issym()
        assert [m.name for m in members.values() if m.isreg()] == ["dir/file"]
    link_src = tmp_path / "layer-link"
    link_src.symlink_to(canary.parent)
    with pytest.raises(PaasError, match="refusing to pack"):
        store.add_dir(link_src, "")


def test_excluded_top_level_names(store: LayerStore, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref\n")
    digest = store.add_dir(src, "", exclude=frozenset({".git"}))
    with tarfile.open(store.blobs.path(digest)) as tar:
        assert not [n for n in tar.getnames() if n.startswith(".git")]


def test_unpack_round_trip_and_ownership(store: LayerStore, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    digest = store.add_dir(src, ".layers/bp/l")
    out = store.unpacked(digest, UID)
    assert out == store.root / "unpacked" / str(UID) / digest.removeprefix("sha256:")
    base = out / ".layers" / "bp" / "l"
    assert (base / "pkg" / "sub" / "data.txt").read_text() == "data\n"
    assert (base / "run.sh").stat().st_mode & 0o777 == 0o755
    assert os.readlink(base / "link") == "pkg/sub/data.txt"
    for path in [out, *out.rglob("*")]:
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (UID, UID), path
        if path.is_dir() and not path.is_symlink():
            assert st.st_mode & 0o777 == 0o755
    assert store.unpacked(digest, UID) == out


def _evil_blob(store: LayerStore, members: list[tuple[tarfile.TarInfo, bytes]]) -> str:
    import hashlib

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    raw = buf.getvalue()
    hexdigest = hashlib.sha256(raw).hexdigest()
    store.blobs.dir.mkdir(parents=True, exist_ok=True)
    (store.blobs.dir / hexdigest).write_bytes(raw)
    return f"sha256:{hexdigest}"


def _file(name: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info, b"x"


def _symlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info, b""


@pytest.mark.parametrize(
    "members",
    [
        [_file("/etc/evil")],
        [_file("a/../../evil")],
        [_symlink("a", str(Path("/tmp"))), _file("a/evil")],
        [_symlink("a", str(Path("/tmp"))), _file("a/b/evil")],
        [_symlink("a", "/tmp"), _symlink("a", "/etc")],
        [_file("a"), _file("a/evil")],
    ],
)
def test_unsafe_members_are_refused(store: LayerStore, members: list) -> None:
    digest = _evil_blob(store, members)
    with pytest.raises(PaasError, match="refusing"):
        store.unpacked(digest, UID)
    assert not (store.root / "unpacked" / str(UID) / digest.removeprefix("sha256:")).exists()


def test_blobs_are_gzip_and_an_image_names_them(store: LayerStore, tmp_path: Path) -> None:
    layer = store.put_dir(make_tree(tmp_path / "src"), "")
    assert store.blobs.path(layer.digest).read_bytes()[:2] == b"\x1f\x8b"
    assert layer.size == store.size(layer.digest) and layer.created
    manifest = store.write_image([layer], {"Env": []}, {"io.paas.app": "a"}, "a:b1")
    content = store.read_json(manifest)
    assert content["layers"] == [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                  "digest": layer.digest, "size": layer.size}]
    config = store.read_json(content["config"]["digest"])
    assert config["rootfs"]["diff_ids"] == [layer.diff_id]
    assert config["config"]["Labels"] == {"io.paas.app": "a"}
    index = json.loads((store.root / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [manifest]


def test_memo_skips_an_untouched_tree_and_notices_a_change(store: LayerStore,
                                                           tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    first = store.put_dir(src, "", memo="key")
    again = store.put_dir(src, "", memo="key")
    assert (again.digest, again.created) == (first.digest, False)
    (src / "app.py").write_text("print('changed')\n")
    assert store.put_dir(src, "", memo="key").digest != first.digest


def test_keep_filters_entries(store: LayerStore, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    digest = store.put_dir(src, "", keep=lambda rel, _: rel.startswith("pkg")).digest
    with tarfile.open(store.blobs.path(digest)) as tar:
        assert tar.getnames() == ["pkg", "pkg/sub", "pkg/sub/data.txt"]


def test_gc_removes_only_old_unnamed_blobs_and_their_unpacked_copies(
        store: LayerStore, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    kept = store.put_dir(src, "", exclude=frozenset({"fifo", "link"}))
    manifest = store.write_image([kept], {}, {}, "a:1")
    gone = store.put_dir(src, "", exclude=frozenset({"fifo"}))
    young = store.put_dir(src, "", exclude=frozenset({"fifo", "abs-link"}))
    unpacked = store.unpacked(gone.digest, UID)
    old = 1_000_000_000
    for layer in (kept, gone):
        os.utime(store.blobs.path(layer.digest), (old, old))

    result = store.gc({manifest}, min_age=3600)

    assert result.removed == [gone.digest]
    assert not unpacked.exists()
    assert store.has(kept.digest) and store.has(young.digest) and store.has(manifest)


def test_a_sparse_file_is_refused_not_packed_as_zeros(store: LayerStore, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    with open(src / "x", "wb") as f:
        f.truncate(100 * 1024**3)
    with pytest.raises(PaasError, match=r"refusing to pack /app/x: a sparse file of 102400 MB"):
        store.add_dir(src, "")
    assert not list(store.blobs.dir.iterdir())


def test_files_past_what_a_build_may_write_are_refused(store: LayerStore, tmp_path: Path) -> None:
    store.size_limit = 1024 * 1024
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b"):
        (src / name).write_bytes(os.urandom(600 * 1024))
    with pytest.raises(PaasError, match=r"more than 1 MB \(reached at /app/b\)"):
        store.add_dir(src, "")
    assert not list(store.blobs.dir.iterdir())


def test_unpacking_stops_at_what_a_build_may_write(store: LayerStore, tmp_path: Path) -> None:
    """A blob in the store (written by an older platform, or by hand) whose files add up to
    more than any build may write is not unpacked onto the host's disk."""
    digest = _evil_blob(store, [_file("a"), (_sized("b", 2 * 1024 * 1024))])
    store.size_limit = 1024 * 1024
    with pytest.raises(PaasError, match=r"refusing to unpack a layer .* more than 1 MB"):
        store.unpacked(digest, UID)
    assert not list((store.root / "unpacked" / str(UID)).iterdir())


def test_a_layer_the_size_of_a_build_unpacks(store: LayerStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"x" * 1024 * 1024)
    digest = store.add_dir(src, "")
    store.size_limit = 1024 * 1024
    assert (store.unpacked(digest, UID) / "a").stat().st_size == 1024 * 1024


def _sized(name: str, size: int) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = size
    return info, bytes(size)


def test_a_tree_too_deep_is_refused_with_its_path_in_app(store: LayerStore,
                                                         tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "/".join(["d"] * 300)).mkdir(parents=True)
    with pytest.raises(PaasError, match=r"refusing to pack /app/d/d/.* more than 256 directories"):
        store.add_dir(src, "")
    link = tmp_path / "link"
    link.symlink_to(src)
    with pytest.raises(PaasError,
                       match=r"refusing to pack /app/\.layers/x: it is (a symlink|not a dir)"):
        store.add_dir(link, ".layers/x")
