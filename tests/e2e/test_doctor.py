"""`paas doctor` on this host, with faults made on purpose, and `paas up` refusing to start on
the same ones with the same messages. Each fault has its positive control: the same check
passing on the same host without the fault."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.platform import PAAS, Platform, release_subnet


@pytest.fixture
def host() -> Iterator[Platform]:
    """A platform's settings (fresh PAAS_HOME, free ports, a free subnet), never started."""
    platform = Platform.create()
    try:
        yield platform
    finally:
        shutil.rmtree(platform.home.parent, ignore_errors=True)
        release_subnet(platform.env["PAAS_DYNO_SUBNET"])


def doctor(platform: Platform, **env: str) -> tuple[int, dict[str, dict[str, Any]]]:
    result = subprocess.run([PAAS, "doctor", "--json"], env={**platform.env, **env},
                            capture_output=True, text=True, timeout=120)
    findings = json.loads(result.stdout)
    return result.returncode, {f"{f['area']}/{f['check']}": f for f in findings}


def up_refused(platform: Platform, **env: str) -> str:
    """`paas up`'s complaint: it must stop at once and start nothing."""
    result = subprocess.run([PAAS, "up"], env={**platform.env, **env}, capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode != 0, result.stdout
    assert "nothing was started" in result.stderr
    assert not (platform.home / "paas-up.pid").exists()
    assert not (platform.home / "redis").exists()
    return result.stderr


def test_a_fit_host_passes_every_check(host: Platform) -> None:
    code, found = doctor(host)
    failed = {name: f["detail"] for name, f in found.items() if f["fatal"]}
    assert code == 0 and failed == {}
    for check in ("kernel/overlayfs", "kernel/veth", "kernel/bridge", "kernel/netfilter",
                  "kernel/cgroups", "tools/runc", "tools/nginx Lua module", "tools/dyno monitor",
                  "network/PAAS_API_PORT", "network/PAAS_DYNO_SUBNET", "disk/free disk",
                  "settings/PAAS_* settings"):
        assert found[check]["ok"], found[check]
    human = subprocess.run([PAAS, "doctor"], env=host.env, capture_output=True, text=True,
                           timeout=120)
    assert human.returncode == 0 and "The platform can run here" in human.stdout


def test_a_port_taken_by_another_program(host: Platform) -> None:
    port = int(host.env["PAAS_API_PORT"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        code, found = doctor(host)
        finding = found["network/PAAS_API_PORT"]
        assert code == 1 and finding["fatal"]
        assert f"port {port} is taken by" in finding["detail"]
        assert "set PAAS_API_PORT to a free port" in finding["fix"]
        assert f"port {port} is taken by" in up_refused(host)
    code, found = doctor(host)
    assert code == 0 and found["network/PAAS_API_PORT"]["ok"]


@pytest.fixture
def dummy_link() -> Iterator[str]:
    """An interface of the host's own (a bridge: this kernel has no dummy links)."""
    name = f"pdt{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "link", "delete", name], check=False)


def test_a_dyno_subnet_taken_by_an_interface(host: Platform, dummy_link: str) -> None:
    code, found = doctor(host)
    assert code == 0 and found["network/PAAS_DYNO_SUBNET"]["ok"]
    inside = host.env["PAAS_DYNO_SUBNET"].replace(".0.0/16", ".77.1/24")
    subprocess.run(["ip", "addr", "add", inside, "dev", dummy_link], check=True)
    code, found = doctor(host)
    finding = found["network/PAAS_DYNO_SUBNET"]
    assert code == 1 and finding["fatal"]
    assert f"overlaps {inside.replace('.1/24', '.0/24')} on {dummy_link}" in finding["detail"]
    assert "set PAAS_DYNO_SUBNET" in finding["fix"]
    assert f"on {dummy_link}" in up_refused(host)


@pytest.fixture
def read_only_home(host: Platform) -> Iterator[Path]:
    host.home.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(host.home), str(host.home)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(host.home)], check=True)
        yield host.home
    finally:
        subprocess.run(["umount", str(host.home)], check=False)


def test_a_read_only_paas_home(host: Platform, read_only_home: Path) -> None:
    code, found = doctor(host)
    finding = found["disk/PAAS_HOME writable"]
    assert code == 1 and finding["fatal"]
    assert f"{read_only_home} is on a read-only filesystem" in finding["detail"]
    assert f"{read_only_home} is on a read-only filesystem" in up_refused(host)


def test_a_writable_paas_home_is_the_control(host: Platform) -> None:
    host.home.mkdir(parents=True)
    code, found = doctor(host)
    assert code == 0 and found["disk/PAAS_HOME writable"]["ok"]


def test_a_bad_setting_stops_doctor_and_up_with_an_example(host: Platform) -> None:
    code, found = doctor(host, PAAS_EGRESS_ALLOW="mirror.lan:3141")
    finding = found["settings/PAAS_EGRESS_ALLOW"]
    assert code == 1 and finding["fatal"]
    assert "PAAS_EGRESS_ALLOW='mirror.lan:3141': 'mirror.lan:3141' is not an address" in \
        finding["detail"]
    assert finding["fix"] == "set it like PAAS_EGRESS_ALLOW=10.1.2.3:3141, 192.168.7.0/24"
    complaint = up_refused(host, PAAS_EGRESS_ALLOW="mirror.lan:3141",
                           PAAS_DYNO_HOST_PORTS="postgres")
    assert "PAAS_EGRESS_ALLOW='mirror.lan:3141'" in complaint
    assert "PAAS_DYNO_HOST_PORTS='postgres'" in complaint
    assert "2 problem(s) found" in complaint


def test_a_bridge_left_by_a_gone_installation_is_a_warning(host: Platform) -> None:
    gone = next(f"{n:04x}" for n in range(0x10000) if not _links(f"pb{n:04x}"))
    bridge = f"pb{gone}7"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    try:
        code, found = doctor(host)
        finding = found["leftovers/other installations"]
        assert code == 0 and not finding["ok"] and not finding["fatal"]
        assert bridge in finding["detail"] and f"ip link delete {bridge}" in finding["fix"]
    finally:
        subprocess.run(["ip", "link", "delete", bridge], check=False)
    code, found = doctor(host)
    assert bridge not in found["leftovers/other installations"]["detail"]


def test_a_mount_left_by_a_gone_installation_is_a_warning(tmp_path: Path,
                                                          host: Platform) -> None:
    disk = tmp_path / "gone-home" / "dynos" / "web-1-ab12cd" / "disk"
    disk.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        code, found = doctor(host)
        finding = found["leftovers/other installations"]
        assert code == 0 and not finding["ok"] and not finding["fatal"]
        assert str(disk) in finding["detail"] and f"umount -l {disk}" in finding["fix"]
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    code, found = doctor(host)
    assert str(disk) not in found["leftovers/other installations"]["detail"]


def _links(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if f": {prefix}" in line]


def test_a_running_platform_is_checked_from_its_api_too(platform: Platform) -> None:
    _, found = doctor(platform)
    assert found["network/PAAS_API_PORT"]["detail"].endswith("is this platform's")
    assert found["services/redis"]["ok"] and found["services/redis clock"]["ok"]
    remote = platform.paas("doctor", "--remote", "--json")
    checks = {f"{f['area']}/{f['check']}" for f in json.loads(remote.stdout)}
    assert {"kernel/cgroups", "network/PAAS_ROUTER_PORT", "services/redis clock"} <= checks
