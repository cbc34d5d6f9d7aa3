"""Users' SSH public keys: who a key that git push presents over SSH belongs to. asyncssh
(with cryptography, ~10 MiB) is loaded when a key is first parsed, not with the API."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from paas.errors import Conflict, Invalid, NotFound
from paas.models import SshKey, User

if TYPE_CHECKING:
    import asyncssh

MAX_KEY_TEXT = 16 << 10
MIN_RSA_BITS = 2048


def parse(text: str) -> tuple[asyncssh.SSHKey, str]:
    """The key and its comment, from one line of an OpenSSH `.pub` file."""
    text = text.strip()
    if "PRIVATE KEY" in text:
        raise Invalid("that is a PRIVATE key: never share it; add the `.pub` file beside it")
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1 or len(text) > MAX_KEY_TEXT:
        raise Invalid("give one public key: the one line of a `.pub` file, like "
                      "`ssh-ed25519 AAAA... you@host` (make one with `ssh-keygen -t ed25519`)")
    import asyncssh
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = asyncssh.import_public_key(lines[0])
    except (asyncssh.KeyImportError, ValueError) as error:
        raise Invalid(f"not an SSH public key ({error}): add the `.pub` file made by "
                      "`ssh-keygen -t ed25519`") from None
    pyca_key = key.pyca_key
    if isinstance(pyca_key, rsa.RSAPublicKey) and pyca_key.key_size < MIN_RSA_BITS:
        raise Invalid(f"RSA keys need at least {MIN_RSA_BITS} bits: make an ed25519 key instead")
    parts = lines[0].split(None, 2)
    return key, (parts[2].strip() if len(parts) > 2 else "")[:200]


def fingerprint(key: asyncssh.SSHKey) -> str:
    return key.get_fingerprint("sha256")


def openssh_line(key: asyncssh.SSHKey) -> str:
    """`type base64`, without the comment."""
    return f"{key.algorithm.decode()} {base64.b64encode(key.public_data).decode()}"


def add(db: Session, user: User, text: str) -> SshKey:
    key, comment = parse(text)
    found = db.scalar(select(SshKey).where(SshKey.fingerprint == fingerprint(key)))
    if found is not None:
        whose = "yours" if found.user_id == user.id else "another user's"
        raise Conflict(f"this key is already added (it is {whose}): `paas keys` lists yours")
    row = SshKey(user_id=user.id, fingerprint=fingerprint(key), comment=comment,
                 public_key=openssh_line(key))
    db.add(row)
    db.flush()
    return row


def of(db: Session, user: User) -> list[SshKey]:
    return list(db.scalars(select(SshKey).where(SshKey.user_id == user.id).order_by(SshKey.id)))


def remove(db: Session, user: User, which: str) -> SshKey:
    """Removes the user's key named by its fingerprint, its comment or its id."""
    rows = [k for k in of(db, user) if which in (k.fingerprint, k.comment, str(k.id))]
    if not rows:
        raise NotFound(f"you have no key {which[:100]!r}: `paas keys` lists yours")
    if len(rows) > 1:
        raise Invalid(f"{len(rows)} of your keys are called {which!r}: remove one by its "
                      "fingerprint (`paas keys` shows them)")
    db.delete(rows[0])
    return rows[0]


def owner(db: Session, key: asyncssh.SSHKey) -> User | None:
    """The user a key presented at login belongs to."""
    row = db.scalar(select(SshKey).where(SshKey.fingerprint == fingerprint(key)))
    if row is None or row.public_key != openssh_line(key):
        return None
    return row.user


def to_dict(row: SshKey) -> dict[str, Any]:
    return {"id": row.id, "fingerprint": row.fingerprint, "comment": row.comment,
            "type": row.public_key.split()[0], "created_at": row.created_at}
