"""TLS certificates: checked against their key and the app's domains, served by SNI."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from paas import domains
from paas.errors import Invalid, NotFound
from paas.models import App, Certificate

if TYPE_CHECKING:  # cryptography (~3 MiB) is loaded by the first certificate parsed
    from cryptography import x509

MAX_PEM = 64 * 1024


@dataclass(frozen=True)
class Parsed:
    hostnames: list[str]
    expires_at: float
    chain_pem: str
    key_pem: str


def parse(cert_pem: str, key_pem: str) -> Parsed:
    """The certificate's hostnames and expiry, or Invalid when it is unreadable, expired, or
    not the certificate of this key."""
    if len(cert_pem) > MAX_PEM or len(key_pem) > MAX_PEM:
        raise Invalid("the certificate or key file is over 64 KiB: is it a PEM file?")
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        chain = x509.load_pem_x509_certificates(cert_pem.encode())
    except ValueError:
        raise Invalid("the certificate is not a PEM certificate (-----BEGIN CERTIFICATE-----)")\
            from None
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        raise Invalid("the key is not an unencrypted PEM private key "
                      "(-----BEGIN PRIVATE KEY-----); decrypt it first") from None
    leaf = chain[0]
    if leaf.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise Invalid("the certificate does not match the key: give the certificate that was "
                      "issued for this private key")
    expires = leaf.not_valid_after_utc.timestamp()
    if expires <= time.time():
        raise Invalid(f"the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
    names = _hostnames(leaf)
    if not names:
        raise Invalid("the certificate names no DNS hostname (subjectAltName or CN)")
    chain_pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain)
    return Parsed(names, expires, chain_pem, key_pem.strip() + "\n")


def _hostnames(cert: x509.Certificate) -> list[str]:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return sorted({n.lower().rstrip(".") for n in names})


def app_hostnames(db: Session, app: App, platform_domain: str) -> list[str]:
    return [f"{app.name}.{platform_domain}", *(d.hostname for d in domains.for_app(db, app))]


def _served(cert_names: list[str], app_names: list[str]) -> list[str]:
    """The app's hostnames this certificate can serve."""
    return [h for h in app_names if any(domains.covers(n, h) or n == h for n in cert_names)]


def add(db: Session, app: App, cert_pem: str, key_pem: str, platform_domain: str) -> Certificate:
    parsed = parse(cert_pem, key_pem)
    app_names = app_hostnames(db, app, platform_domain)
    if not _served(parsed.hostnames, app_names):
        raise Invalid(f"the certificate is for {', '.join(parsed.hostnames)}, which is none of "
                      f"{app.name}'s domains ({', '.join(app_names)}): add the domain first "
                      "with `paas domains:add`")
    cert = Certificate(app_id=app.id, name=_free_name(db, app), cert_pem=parsed.chain_pem,
                       key_pem=parsed.key_pem, hostnames=parsed.hostnames,
                       expires_at=parsed.expires_at)
    db.add(cert)
    db.flush()
    return cert


def _free_name(db: Session, app: App) -> str:
    taken = set(db.scalars(select(Certificate.name)))
    n = 1
    while f"{app.name}-cert-{n}" in taken:
        n += 1
    return f"{app.name}-cert-{n}"


def for_app(db: Session, app: App) -> list[Certificate]:
    return list(db.scalars(select(Certificate).where(Certificate.app_id == app.id)
                           .order_by(Certificate.name)))


def all_certificates(db: Session) -> list[Certificate]:
    return list(db.scalars(select(Certificate).order_by(Certificate.name)))


def remove(db: Session, app: App, name: str) -> Certificate:
    cert = db.scalar(select(Certificate).where(Certificate.name == name,
                                               Certificate.app_id == app.id))
    if cert is None:
        raise NotFound(f"{app.name} has no certificate {name!r}: `paas certs -a {app.name}` "
                       "lists them")
    db.delete(cert)
    db.flush()
    return cert


def served_hostnames(db: Session, cert: Certificate, platform_domain: str) -> list[str]:
    """The app's hostnames (wildcards included) that the router serves with this certificate:
    never a name of another app, even under the certificate's wildcard."""
    app = db.get(App, cert.app_id)
    return _served(cert.hostnames, app_hostnames(db, app, platform_domain)) if app else []


def to_dict(cert: Certificate) -> dict[str, Any]:
    return {"name": cert.name, "hostnames": cert.hostnames, "expires_at": cert.expires_at,
            "created_at": cert.created_at}
