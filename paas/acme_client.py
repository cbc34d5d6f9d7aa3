"""The edge to the ACME CA (RFC 8555), through certbot's `acme` library: the platform's one
account (its key 0600 in PAAS_HOME/acme), orders with http-01 challenges, finalization.
Every failure comes out as a CAError with a message for `paas certs:auto`; nothing here
touches the database."""

from __future__ import annotations

import datetime
import json
import os
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from paas.settings import Settings

USER_AGENT = "paas-acme"
TIMEOUT = 30


class CAError(Exception):
    """What went wrong talking to the CA, said for users; `retry_after` when the CA named a
    time (rate limits), `account_gone` when the CA no longer knows the platform's account."""

    def __init__(self, message: str, retry_after: float | None = None,
                 account_gone: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.account_gone = account_gone


@dataclass(frozen=True)
class OrderStarted:
    order_url: str
    authz_url: str
    # Empty when the CA already holds a valid authorization for the name: nothing to answer.
    challenge_url: str = ""
    token: str = ""
    key_authorization: str = ""


@dataclass(frozen=True)
class Validation:
    status: str  # pending, valid, invalid
    error: str = ""  # the CA's reason for an invalid one


class _Network(client.ClientNetwork):
    """Remembers the last Retry-After the CA sent (a rate limit names when to come back)."""

    last_retry_after: str | None = None

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any
                      ) -> requests.Response:
        response = super()._send_request(method, url, *args, **kwargs)
        self.last_retry_after = response.headers.get("Retry-After")
        return response


def new_key_pem() -> str:
    """A certificate's private key (P-256), PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


class Account:
    """The platform's ACME account: one key, registered once per CA directory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.acme_dir
        self.key_path = self.dir / "account-key.pem"
        self.info_path = self.dir / "account.json"
        self.registered_again = False
        self._client: client.ClientV2 | None = None
        self._net: _Network | None = None
        self.key = self._load_key()

    @property
    def thumbprint(self) -> str:
        return jose.b64encode(self.key.thumbprint()).decode()

    def _load_key(self) -> jose.JWKRSA:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        try:
            pem = _read_private(self.key_path)
        except FileNotFoundError:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            _write_private(self.key_path, pem)
            self.info_path.unlink(missing_ok=True)  # a new key is a new account
        loaded = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise CAError(f"{self.key_path} is not an RSA key: remove it to make a new account")
        return jose.JWKRSA(key=loaded)

    def connected(self) -> client.ClientV2:
        """Connected and registered (again, if the CA forgot the account)."""
        if self._client is None:
            self._client = _calling(self._connect)
        return self._client

    def _connect(self) -> client.ClientV2:
        verify: Any = self.settings.acme_ca_bundle or True  # requests takes a bundle's path
        net = _Network(self.key, alg=jose.RS256, verify_ssl=verify, user_agent=USER_AGENT,
                       timeout=TIMEOUT)
        directory = client.ClientV2.get_directory(self.settings.acme_directory, net)
        acme = client.ClientV2(directory, net)
        uri = self._stored_uri()
        if uri:
            net.account = messages.RegistrationResource(uri=uri, body=messages.Registration())
        else:
            self._register(acme)
        self._net = net
        return acme

    def _stored_uri(self) -> str:
        try:
            info = json.loads(self.info_path.read_text())
        except (OSError, ValueError):
            return ""
        if not isinstance(info, dict) or info.get("directory") != self.settings.acme_directory:
            return ""  # another CA: register there
        return str(info.get("uri") or "")

    def _register(self, acme: client.ClientV2) -> None:
        email = self.settings.acme_email
        registration = messages.NewRegistration.from_data(
            email=email or None, terms_of_service_agreed=True)
        try:
            regr = acme.new_account(registration)
        except errors.ConflictError as exc:  # this key has an account there already
            regr = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
            acme.net.account = regr
        _write_private(self.info_path, json.dumps(
            {"directory": self.settings.acme_directory, "uri": regr.uri}).encode())

    def register_again(self) -> None:
        """The CA does not know the account (its key was lost, the CA's state was reset)."""
        self.info_path.unlink(missing_ok=True)
        self._client = None
        self.registered_again = True
        self.connected()

    def retry_after(self) -> float | None:
        return _seconds_until(self._net.last_retry_after) if self._net else None

    # -- orders -------------------------------------------------------------------------

    def new_order(self, hostname: str, key_pem: str) -> OrderStarted:
        acme = self.connected()
        csr = crypto_util.make_csr(key_pem.encode(), [hostname])
        order = self._call(lambda: acme.new_order(csr))
        if len(order.authorizations) != 1:
            raise CAError(f"the CA asked for {len(order.authorizations)} authorizations "
                          f"for one name ({hostname})")
        authz = order.authorizations[0]
        if authz.body.status == messages.STATUS_VALID:
            return OrderStarted(str(order.uri), str(authz.uri))
        challenge = _http01(authz)
        return OrderStarted(str(order.uri), str(authz.uri), str(challenge.uri),
                            challenge.chall.encode("token"),
                            challenge.chall.key_authorization(self.key))

    def answer(self, authz_url: str) -> None:
        acme = self.connected()
        authz = self._authorization(authz_url)
        challenge = _http01(authz)
        self._call(lambda: acme.answer_challenge(challenge, challenge.response(self.key)))

    def validation(self, authz_url: str) -> Validation:
        authz = self._authorization(authz_url)
        status = str(authz.body.status.name)
        if status == "invalid":
            errors_ = [c.error for c in authz.body.challenges if c.error is not None]
            detail = errors_[0].detail if errors_ and errors_[0].detail else "no reason given"
            return Validation(status, f"the CA could not validate {authz.body.identifier.value}"
                                      f": {detail}")
        return Validation(status)

    def finalize(self, order_url: str, hostname: str, key_pem: str, seconds: float) -> str:
        """The certificate chain (PEM), once the CA issued it."""
        acme = self.connected()
        body = messages.Order.from_json(self._call(lambda: acme._post_as_get(order_url)).json())
        csr = crypto_util.make_csr(key_pem.encode(), [hostname])
        order = messages.OrderResource(body=body, uri=order_url, csr_pem=csr)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=seconds)
        done = self._call(lambda: acme.finalize_order(order, deadline))
        if not done.fullchain_pem:
            raise CAError("the CA finished the order without a certificate")
        return str(done.fullchain_pem)

    def _authorization(self, url: str) -> messages.AuthorizationResource:
        acme = self.connected()
        response = self._call(lambda: acme._post_as_get(url))
        return messages.AuthorizationResource(
            body=_calling(lambda: messages.Authorization.from_json(response.json())), uri=url)

    def _call(self, work: Any) -> Any:
        try:
            return _calling(work)
        except CAError as exc:
            if exc.retry_after is None and self._net and self._net.last_retry_after:
                exc.retry_after = self.retry_after()
            raise


def _http01(authz: messages.AuthorizationResource) -> messages.ChallengeBody:
    for challenge in authz.body.challenges:
        if isinstance(challenge.chall, challenges.HTTP01):
            return challenge
    raise CAError("the CA offers no http-01 challenge for "
                  f"{authz.body.identifier.value}: it cannot be validated by the router")


def _calling(work: Any) -> Any:
    """Runs a call to the CA, turning every way it can fail into a CAError."""
    try:
        return work()
    except messages.Error as exc:
        gone = exc.code in ("accountDoesNotExist", "unauthorized") and \
            "account" in (exc.detail or "").lower()
        raise CAError(f"the CA refused: {exc.detail or exc.code or exc.typ}"
                      + (" (rate limited)" if exc.code == "rateLimited" else ""),
                      account_gone=gone or exc.code == "accountDoesNotExist") from None
    except requests.exceptions.SSLError as exc:
        raise CAError("the CA's HTTPS certificate is not trusted (set PAAS_ACME_CA_BUNDLE for "
                      f"a private CA): {_short(exc)}") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise CAError(f"cannot reach the CA: {_short(exc)}") from None
    except errors.TimeoutError:
        raise CAError("the CA did not finish in time") from None
    except (errors.Error, requests.exceptions.RequestException, jose.DeserializationError,
            ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CAError(f"the CA answered something that is not ACME: {_short(exc)}") from None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."


def _seconds_until(value: str | None) -> float | None:
    """Retry-After: seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def _read_private(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _write_private(path: Path, data: bytes) -> None:
    """0600, root's, written whole (a crash leaves the old file or the new one)."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
