"""Credentials into identities: OIDC/JWT bearer tokens checked against a JWKS, API keys, and
client certificates.

Tokens are verified with PyJWT against the identity provider's published keys (a JWKS, read
from a file or an HTTPS URL). The key set is refreshed on a schedule and when a token names a
key id it does not hold, so a provider's key rotation needs no restart, and a key removed from
the set stops verifying at the next refresh. Only asymmetric algorithms are accepted: a
shared-secret (``HS*``) or ``none`` token can never pass for a provider-signed one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt

from twinstack.common.access import DEFAULT_TENANT, Principal, PrincipalKind
from twinstack.common.errors import UnauthenticatedError

logger = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "EdDSA",
)
API_KEY_PREFIX = "tsk_"
_API_KEY_PATTERN = re.compile(r"tsk_([0-9a-f]{16})_([A-Za-z0-9_-]{32,128})")
# A token naming an unknown key refreshes the set at most this often: a flood of made-up key
# ids must not turn into a flood of requests to the identity provider.
MIN_FORCED_REFRESH_INTERVAL_S = 10.0
VERIFIED_TOKENS_KEPT = 4096


@dataclass(frozen=True)
class TokenRules:
    """What a bearer token must satisfy.

    Attributes:
        issuer: The ``iss`` every token must carry.
        audience: The ``aud`` every token must include.
        clock_skew_s: Leeway for ``exp``, ``nbf`` and ``iat`` against this host's clock.
        tenant_claim: The claim naming the tenant (absent: the default tenant).
        groups_claim: The claim listing the principal's groups.
        roles_claim: The claim listing roles the provider grants tenant-wide.
    """

    issuer: str
    audience: str
    clock_skew_s: float = 30.0
    tenant_claim: str = "tenant"
    groups_claim: str = "groups"
    roles_claim: str = "roles"


class JwksKeys:
    """The identity provider's signing keys, from a JWKS file or URL, kept fresh.

    Args:
        source: A file path or an ``http(s)://`` URL of the JWKS document.
        refresh_interval_s: How often the set is re-read.
        timeout_s: Timeout of one fetch from a URL.
    """

    def __init__(self, source: str, *, refresh_interval_s: float, timeout_s: float = 5.0) -> None:
        self._source = source
        self._refresh_interval_s = refresh_interval_s
        self._timeout_s = timeout_s
        self._keys: dict[str, jwt.PyJWK] = {}
        # Changes whenever the set of keys changes, so verified tokens can be forgotten.
        self.generation = 0
        self._fingerprint = ""
        self._loaded_at = float("-inf")
        self._forced_at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh_if_stale(self) -> None:
        """Re-reads the set when its refresh interval has passed."""
        now = time.monotonic()
        if now - self._loaded_at > self._refresh_interval_s:
            await self._refresh(now)

    async def key(self, key_id: str | None) -> jwt.PyJWK:
        """The key a token's header names; refreshes the set when it is stale or lacks it."""
        now = time.monotonic()
        if now - self._loaded_at > self._refresh_interval_s:
            await self._refresh(now)
        found = self._find(key_id)
        if found is None and now - self._forced_at > MIN_FORCED_REFRESH_INTERVAL_S:
            self._forced_at = now
            await self._refresh(now)
            found = self._find(key_id)
        if found is None:
            raise UnauthenticatedError("the token's signing key is not one the issuer publishes")
        return found

    def _find(self, key_id: str | None) -> jwt.PyJWK | None:
        if key_id is not None:
            return self._keys.get(key_id)
        # A provider with a single key may leave kid out of tokens.
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    async def _refresh(self, now: float) -> None:
        async with self._lock:
            if self._loaded_at >= now:
                return
            try:
                document = await self._read()
                keys = {}
                for number, entry in enumerate(document.get("keys", [])):
                    if entry.get("use", "sig") != "sig":
                        continue
                    try:
                        keys[str(entry.get("kid", number))] = jwt.PyJWK(entry)
                    except jwt.PyJWTError as error:
                        logger.warning("skipping a JWKS key: %s", error)
            except (OSError, ValueError, httpx.HTTPError) as error:
                # Keep the keys we have: a provider outage must not lock everyone out at once.
                logger.warning("cannot refresh the JWKS from %s: %s", self._source, error)
                if not self._keys:
                    raise UnauthenticatedError(
                        "the identity provider's keys are unavailable"
                    ) from error
                return
            fingerprint = json.dumps(document.get("keys", []), sort_keys=True)
            if fingerprint != self._fingerprint:
                self.generation += 1
                self._fingerprint = fingerprint
            self._keys = keys
            self._loaded_at = time.monotonic()

    async def _read(self) -> Mapping[str, Any]:
        if self._source.startswith(("http://", "https://")):
            async with httpx.AsyncClient(timeout=self._timeout_s) as client:
                response = await client.get(self._source)
                response.raise_for_status()
                document = response.json()
        else:
            document = json.loads(await asyncio.to_thread(Path(self._source).read_text))
        if not isinstance(document, dict):
            raise ValueError("a JWKS is a JSON object with a keys array")
        return document


class TokenVerifier:
    """Bearer tokens into principals.

    Args:
        keys: The provider's keys.
        rules: Issuer, audience, skew and claim names.
    """

    def __init__(self, keys: JwksKeys, rules: TokenRules) -> None:
        self._keys = keys
        self._rules = rules
        # Verified tokens until they expire: a client sends the same token with every call, and
        # a signature check costs more than the rest of admitting a call. Forgotten whenever
        # the key set changes, so a key rotated away stops working at the next refresh.
        self._verified: OrderedDict[str, tuple[Principal, float, int]] = OrderedDict()

    async def principal(self, token: str) -> Principal:
        """The principal a valid token names.

        Raises:
            UnauthenticatedError: Malformed, forged, expired, not yet valid, or for another
                issuer or audience; the message says which.
        """
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires_at, generation = cached
            if time.time() < expires_at and generation == self._keys.generation:
                await self._keys.refresh_if_stale()
                if generation == self._keys.generation:
                    return principal
            del self._verified[token]
        principal, expires_at = await self._verify(token)
        self._verified[token] = (principal, expires_at, self._keys.generation)
        if len(self._verified) > VERIFIED_TOKENS_KEPT:
            self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise UnauthenticatedError("the bearer credential is not a valid token") from None
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise UnauthenticatedError(
                f"token algorithm {header.get('alg')!r} is not accepted; use one of "
                + ", ".join(ALLOWED_ALGORITHMS)
            )
        key = await self._keys.key(header.get("kid"))
        rules = self._rules
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[str(header["alg"])],
                audience=rules.audience,
                issuer=rules.issuer,
                leeway=rules.clock_skew_s,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise UnauthenticatedError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise UnauthenticatedError(
                "the token is not valid yet (nbf/iat in the future)"
            ) from None
        except jwt.InvalidIssuerError:
            raise UnauthenticatedError("the token is from another issuer") from None
        except jwt.InvalidAudienceError:
            raise UnauthenticatedError("the token is for another audience") from None
        except jwt.InvalidSignatureError:
            raise UnauthenticatedError("the token's signature does not verify") from None
        except jwt.PyJWTError as error:
            raise UnauthenticatedError(f"the token is not valid: {error}") from None
        tenant = claims.get(rules.tenant_claim, DEFAULT_TENANT)
        principal = Principal(
            subject=f"user:{claims['sub']}",
            tenant=str(tenant),
            kind=PrincipalKind.USER,
            groups=_names(claims.get(rules.groups_claim)),
            roles=_names(claims.get(rules.roles_claim)),
            credential=token,
        )
        return principal, float(claims["exp"]) + rules.clock_skew_s


def _names(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence):
        return tuple(str(item) for item in value)
    return ()


@dataclass(frozen=True)
class ApiKeySecret:
    """A presented API key, split into its id and secret."""

    key_id: str
    secret: str

    @property
    def digest(self) -> str:
        return secret_digest(self.secret)


def new_api_key() -> tuple[str, ApiKeySecret]:
    """A fresh key: what the caller sends (``tsk_<id>_<secret>``) and its parts."""
    parsed = ApiKeySecret(secrets.token_hex(8), secrets.token_urlsafe(32))
    return f"{API_KEY_PREFIX}{parsed.key_id}_{parsed.secret}", parsed


def parse_api_key(presented: str) -> ApiKeySecret | None:
    """The parts of an API key, or None if ``presented`` is not shaped like one."""
    match = _API_KEY_PATTERN.fullmatch(presented)
    return ApiKeySecret(match.group(1), match.group(2)) if match else None


def secret_digest(secret: str) -> str:
    """What is stored of a key's secret. A fast hash is enough: the secret is 256 random bits,
    so there is nothing to guess that a slow hash would protect (unlike a password)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secrets_match(digest: str, presented: ApiKeySecret) -> bool:
    return secrets.compare_digest(digest, presented.digest)


def certificate_name(auth_context: Mapping[str, Iterable[bytes]]) -> str | None:
    """The verified client certificate's name (common name, else first SAN), or None when the
    connection carried no verified client certificate."""
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        for value in auth_context.get(key, ()):
            return value.decode(errors="replace")
    return None
