"""A local identity provider for the local platform and tests: a signing key, its JWKS, and
tokens signed with it, so that a local run has authentication on like production does; and a
local certificate authority for TLS and mutual TLS between services.

Files (created once, kept across restarts): ``signing-key.pem`` (EC P-256, owner-only),
``jwks.json`` (the public key the services verify with) and ``admin.token`` (an admin of the
default tenant, renewed when it is about to expire), which the CLI and SDK pick up.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOCAL_ISSUER = "https://twinstack.local/issuer"
LOCAL_AUDIENCE = "twinstack"
ADMIN_TOKEN_TTL_S = 30 * 24 * 3600
# Renewed when less than this is left, so a platform started today works all week.
ADMIN_TOKEN_RENEW_S = 7 * 24 * 3600


class LocalIssuer:
    """Issues and verifies-by-JWKS local tokens.

    Args:
        directory: Where the key, the JWKS and the admin token live.
        key_id: The JWKS key id (a rotation adds a key with another id).
    """

    def __init__(self, directory: Path, *, key_id: str = "local-1") -> None:
        self.directory = directory
        self.key_id = key_id
        self.key_path = directory / "signing-key.pem"
        self.jwks_path = directory / "jwks.json"
        self.admin_token_path = directory / "admin.token"

    def ensure(self) -> LocalIssuer:
        """Creates the key and JWKS if missing, and an admin token if missing or expiring."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        if not self.key_path.exists():
            _write_private(self.key_path, _pem_of(ec.generate_private_key(ec.SECP256R1())))
        if not self.jwks_path.exists():
            self.publish([self])
        if self._admin_token_expiring():
            token = self.issue("local-admin", roles=("admin",), ttl_s=ADMIN_TOKEN_TTL_S)
            _write_private(self.admin_token_path, token.encode())
        return self

    def _admin_token_expiring(self) -> bool:
        if not self.admin_token_path.exists():
            return True
        try:
            claims = jwt.decode(
                self.admin_token_path.read_text().strip(), options={"verify_signature": False}
            )
        except jwt.PyJWTError:
            return True
        return float(claims.get("exp", 0)) - time.time() < ADMIN_TOKEN_RENEW_S

    @property
    def admin_token(self) -> str:
        return self.admin_token_path.read_text().strip()

    def public_jwk(self) -> dict[str, Any]:
        """This key as a JWKS entry."""
        private = self._private_key()
        jwk: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
        return {**jwk, "kid": self.key_id, "use": "sig", "alg": "ES256"}

    def publish(self, issuers: Sequence[LocalIssuer]) -> None:
        """Writes the JWKS with the keys of ``issuers`` (more than one during a rotation)."""
        document = {"keys": [issuer.public_jwk() for issuer in issuers]}
        self.jwks_path.write_text(json.dumps(document, indent=2))

    def issue(
        self,
        subject: str,
        *,
        roles: Sequence[str] = (),
        groups: Sequence[str] = (),
        tenant: str | None = None,
        ttl_s: float = 3600.0,
        not_before_s: float = 0.0,
        issuer: str = LOCAL_ISSUER,
        audience: str = LOCAL_AUDIENCE,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed token.

        Args:
            subject: The ``sub`` claim.
            roles: Roles granted tenant-wide by the token.
            groups: Groups for bindings naming ``group:<name>``.
            tenant: The tenant claim (None: none, meaning the default tenant).
            ttl_s: Lifetime; negative for an already expired token.
            not_before_s: Seconds from now before which the token is not valid.
            issuer: The ``iss`` claim.
            audience: The ``aud`` claim.
            extra: More claims.
        """
        now = time.time()
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "sub": subject,
            "iat": int(min(now, now + ttl_s)),
            "exp": int(now + ttl_s),
            "jti": uuid.uuid4().hex,
        }
        if not_before_s:
            claims["nbf"] = int(now + not_before_s)
        if roles:
            claims["roles"] = list(roles)
        if groups:
            claims["groups"] = list(groups)
        if tenant is not None:
            claims["tenant"] = tenant
        claims.update(extra or {})
        return jwt.encode(
            claims, self._private_key(), algorithm="ES256", headers={"kid": self.key_id}
        )

    def _private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.key_path} is not an EC private key")
        return key

    def service_env(self) -> dict[str, str]:
        """The settings that make a service verify this issuer's tokens."""
        return {
            "TWINSTACK_AUTH_MODE": "required",
            "TWINSTACK_AUTH_JWKS": str(self.jwks_path),
            "TWINSTACK_AUTH_ISSUER": LOCAL_ISSUER,
            "TWINSTACK_AUTH_AUDIENCE": LOCAL_AUDIENCE,
            # grpcurl discovers methods by reflection, also for a health check; locally it is
            # open (its calls still need a token). Production keeps it closed.
            "TWINSTACK_AUTH_OPEN_REFLECTION": "true",
        }

    def service_settings(self) -> dict[str, Any]:
        """The same as settings fields."""
        return {
            "auth_mode": "required",
            "auth_jwks": str(self.jwks_path),
            "auth_issuer": LOCAL_ISSUER,
            "auth_audience": LOCAL_AUDIENCE,
        }


def local_secret(path: Path) -> str:
    """A random secret kept (owner-only) in ``path``: made once, the same on every restart."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, secrets.token_urlsafe(24).encode())
    return path.read_text()


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


class LocalCertificateAuthority:
    """A local CA that signs service certificates, for TLS and mutual TLS between services.

    Args:
        directory: Where ``ca.pem``/``ca-key.pem`` and the issued certificates live.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cert_path = directory / "ca.pem"
        self.key_path = directory / "ca-key.pem"

    def ensure(self) -> LocalCertificateAuthority:
        """Creates the CA if it is missing."""
        if self.cert_path.exists():
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "twinstack local CA")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        _write_private(self.key_path, _pem_of(key))
        self.cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return self

    def issue(
        self, name: str, *, hosts: Sequence[str] = ("localhost", "127.0.0.1")
    ) -> tuple[Path, Path]:
        """A certificate for ``name`` (its common name: the service identity) valid for
        ``hosts`` as a server and as a client. Returns the certificate and key files."""
        ca_key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.key_path} is not an EC private key")
        ca = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        alternative_names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                alternative_names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alternative_names.append(x509.DNSName(host))
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        cert_path = self.directory / f"{name}.pem"
        key_path = self.directory / f"{name}-key.pem"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_private(key_path, _pem_of(key))
        return cert_path, key_path


def _pem_of(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
