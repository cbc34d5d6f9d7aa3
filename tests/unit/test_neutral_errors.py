"""Platform errors shown to a pusher name neither PAAS_HOME nor layer digests."""

from pathlib import Path

from paas.redact import neutral

DIGEST = "ab" * 32


def test_the_home_prefix_becomes_a_variable(tmp_path: Path) -> None:
    home = tmp_path / "paas"
    text = f"cannot unmount {home}/dynos/web-1/rootfs: busy; see '{home}'"
    assert neutral(text, home) == \
        "cannot unmount $PAAS_HOME/dynos/web-1/rootfs: busy; see '$PAAS_HOME'"


def test_a_longer_name_sharing_the_prefix_is_kept(tmp_path: Path) -> None:
    home = tmp_path / "paas"
    assert neutral(f"{home}-old/x", home) == f"{home}-old/x"


def test_a_resolved_home_is_neutralised_too(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    text = f"no such file {tmp_path / 'real'}/layers/x"
    assert neutral(text, tmp_path / "link") == "no such file $PAAS_HOME/layers/x"


def test_layer_digests_become_placeholders(tmp_path: Path) -> None:
    text = f"layer sha256:{DIGEST} would not unpack into /x/{DIGEST}.tmp"
    assert neutral(text, tmp_path) == "layer <layer> would not unpack into /x/<layer>.tmp"


def test_shorter_or_longer_hex_runs_stay(tmp_path: Path) -> None:
    text = f"commit 1a2b3c4 and {'f' * 65}"
    assert neutral(text, tmp_path) == text


def test_other_text_is_unchanged(tmp_path: Path) -> None:
    text = "the dyno network 10.1.0.0/24 is already used by br0 on this host"
    assert neutral(text, tmp_path) == text
