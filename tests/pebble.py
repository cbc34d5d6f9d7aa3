"""Pebble, a real ACME CA for tests (Debian's `pebble`), with `pebble-challtestsrv` as its
DNS, on loopback and free ports: started once per test session (tests/conftest.py).

Debian ships no configuration and no certificate for Pebble's own HTTPS listener: a throwaway
CA made here signs one (the platform trusts it through PAAS_ACME_CA_BUNDLE). Pebble's
issuing root, from its management endpoint, is what test clients trust to check the
certificates the platform serves. Every name resolves to 127.0.0.1 (challtestsrv), and Pebble
validates http-01 on `http_port`: the router port of the one platform that uses it."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.platform import free_port

# Certificates 30 days and 40 s long: the platform renews 30 days before expiry, so 40 s
# after issuance, again and again: renewal is seen within a test.
VALIDITY_SECONDS = 30 * 86400 + 40


@dataclass
class Pebble:
    dir: Path
    http_port: int
    acme_port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    dns_port: int = field(default_factory=free_port)
    dns_management_port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.acme_port}/dir"

    @property
    def listener_ca(self) -> Path:
        """The throwaway CA of Pebble's own HTTPS (PAAS_ACME_CA_BUNDLE)."""
        return self.dir / "listener-ca.pem"

    @property
    def issuing_root(self) -> Path:
        """Pebble's root that the certificates it issues chain to (for test clients only)."""
        return self.dir / "issuing-root.pem"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_listener_cert()
        config = self.dir / "pebble.json"
        config.write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{self.acme_port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(self.dir / "listener.pem"),
            "privateKey": str(self.dir / "listener.key"),
            "httpPort": self.http_port,
            "tlsPort": free_port(),  # tls-alpn-01: unused, but Pebble wants a port
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
            "retryAfter": {"authz": 1, "order": 1},
            "certificateValidityPeriod": VALIDITY_SECONDS,
        }}))
        self._spawn("challtestsrv", [
            "pebble-challtestsrv", "-management", f"127.0.0.1:{self.dns_management_port}",
            "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "",
            "-tlsalpn01", "", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""], {})
        self._spawn("pebble", ["pebble", "-config", str(config),
                               "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                    {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0",
                     "PEBBLE_AUTHZREUSE": "0"})
        deadline = time.monotonic() + 20
        while True:
            try:
                root = httpx.get(f"https://127.0.0.1:{self.management_port}/roots/0",
                                 verify=ssl.create_default_context(
                                     cafile=str(self.listener_ca)), timeout=2)
                if root.status_code == 200 and self._dns_up():
                    self.issuing_root.write_text(root.text)
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                raise AssertionError(f"pebble did not start: {self.log()}")
            time.sleep(0.2)

    def _dns_up(self) -> bool:
        try:
            return httpx.post(self._dns("clear-servfail"), json={"host": "probe.test"},
                              timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _dns(self, command: str) -> str:
        return f"http://127.0.0.1:{self.dns_management_port}/{command}"

    def set_servfail(self, host: str, failing: bool) -> None:
        """DNS for `host` answers SERVFAIL: the CA cannot reach it (a domain routed nowhere)."""
        command = "set-servfail" if failing else "clear-servfail"
        httpx.post(self._dns(command), json={"host": host}, timeout=5).raise_for_status()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:]
                         for p in sorted(self.dir.glob("*.log")))

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        with (self.dir / f"{name}.log").open("wb") as log:
            self.processes.append(subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **env}, cwd=self.dir))

    def _write_listener_cert(self) -> None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "paas test: pebble listener")])
        now = datetime.datetime.now(datetime.UTC)
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(days=1))
              .not_valid_after(now + datetime.timedelta(days=7))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=7))
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        pem = serialization.Encoding.PEM
        self.listener_ca.write_bytes(ca.public_bytes(pem))
        (self.dir / "listener.pem").write_bytes(leaf.public_bytes(pem))
        key_path = self.dir / "listener.key"
        key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_path.chmod(0o600)
