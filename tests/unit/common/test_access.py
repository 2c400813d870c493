"""Authorization decisions, the method table and token verification (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import descriptor_pool

from twinstack.api.access.v1 import access_pb2
from twinstack.api.devices.v1 import devices_pb2
from twinstack.api.ingestion.v1 import ingestion_pb2
from twinstack.api.registry.v1 import registry_pb2
from twinstack.api.simulation.v1 import simulation_pb2, sweep_pb2
from twinstack.api.state.v1 import state_pb2
from twinstack.common.access import (
    METHOD_VERBS,
    ROLES,
    Binding,
    Principal,
    PrincipalKind,
    Verb,
    decide,
    granted_verbs,
)
from twinstack.common.errors import UnauthenticatedError
from twinstack.common.identity import (
    JwksKeys,
    TokenRules,
    TokenVerifier,
    new_api_key,
    parse_api_key,
    secrets_match,
)
from twinstack.devstack import LocalIssuer
from twinstack.devstack.credentials import LOCAL_AUDIENCE, LOCAL_ISSUER

FILES = (
    access_pb2,
    devices_pb2,
    ingestion_pb2,
    registry_pb2,
    simulation_pb2,
    sweep_pb2,
    state_pb2,
)


def test_every_method_of_every_service_has_a_verb() -> None:
    methods = {
        f"/{service.full_name}/{method.name}"
        for module in FILES
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert methods - set(METHOD_VERBS) == set(), "an RPC without a verb would be refused"
    assert set(METHOD_VERBS) - methods == set(), "the table names methods that do not exist"
    assert descriptor_pool.Default() is not None


def alice(*roles: str, groups: tuple[str, ...] = ()) -> Principal:
    return Principal("user:alice", "default", PrincipalKind.USER, groups=groups, roles=roles)


def test_roles_grant_their_verbs_and_nothing_else() -> None:
    assert decide(alice("viewer"), Verb.TWINS_READ, []).allowed
    assert not decide(alice("viewer"), Verb.TWINS_WRITE, []).allowed
    assert decide(alice("operator"), Verb.DESIRED_WRITE, []).allowed
    assert not decide(alice("modeler"), Verb.DESIRED_WRITE, []).allowed, "actuation is apart"
    assert not decide(alice("analyst"), Verb.ADMIN, []).allowed
    assert set(granted_verbs(alice("admin"), [])) == set(Verb)
    assert ROLES["device"] == {Verb.TELEMETRY_WRITE, Verb.SELF}
    assert not decide(alice(), Verb.SELF, []).allowed, "no role, no access at all"


def test_bindings_grant_by_subject_or_group_and_deny_wins() -> None:
    grant = Binding("b1", "group:ops", "operator")
    assert decide(alice(groups=("ops",)), Verb.TELEMETRY_WRITE, [grant]).allowed
    assert not decide(alice(groups=("eng",)), Verb.TELEMETRY_WRITE, [grant]).allowed
    deny = Binding("b2", "user:alice", "", deny=True)
    decision = decide(alice("admin", groups=("ops",)), Verb.TWINS_READ, [grant, deny])
    assert not decision.allowed
    assert "b2" in decision.explanation
    assert any("b1" in m for m in decision.matched)
    scoped = Binding("b3", "user:alice", "admin", scope="FROM site FOLLOW contains")
    assert not decide(alice(), Verb.TWINS_READ, [scoped]).allowed
    assert decide(alice(), Verb.TWINS_READ, [scoped]).models == frozenset(), "not a model scope"
    on_pumps = Binding("b4", "user:alice", "viewer", scope="model:dtmi:acme:Pump;1")
    decision = decide(alice(), Verb.TWINS_READ, [on_pumps])
    assert not decision.allowed, "not tenant-wide"
    assert decision.models == {"dtmi:acme:Pump;1"}
    assert decide(alice(), Verb.TWINS_WRITE, [on_pumps]).models == frozenset()
    assert decide(alice(), Verb.SELF, [on_pumps]).allowed, "a scoped user may ask who it is"


def test_api_keys_verify_only_with_their_secret() -> None:
    presented, parts = new_api_key()
    parsed = parse_api_key(presented)
    assert parsed == parts
    assert secrets_match(parts.digest, parsed)
    forged = parse_api_key(presented[:-4] + "AAAA")
    assert forged is not None
    assert not secrets_match(parts.digest, forged)
    assert parse_api_key("tsk_short_x") is None
    assert parse_api_key("eyJhbGciOi.x.y") is None


@pytest.fixture
def issuer(tmp_path: Path) -> LocalIssuer:
    return LocalIssuer(tmp_path / "auth").ensure()


def verifier(
    issuer: LocalIssuer, *, skew_s: float = 5.0, refresh_interval_s: float = 300
) -> TokenVerifier:
    return TokenVerifier(
        JwksKeys(str(issuer.jwks_path), refresh_interval_s=refresh_interval_s),
        TokenRules(issuer=LOCAL_ISSUER, audience=LOCAL_AUDIENCE, clock_skew_s=skew_s),
    )


async def test_a_valid_token_names_its_principal(issuer: LocalIssuer) -> None:
    token = issuer.issue("bob", roles=("viewer",), groups=("ops",), tenant="default")
    principal = await verifier(issuer).principal(token)
    assert principal.subject == "user:bob"
    assert principal.groups == ("ops",)
    assert principal.roles == ("viewer",)
    assert principal.tenant == "default"
    assert principal.credential == token


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda i: i.issue("bob", ttl_s=-120), "expired"),
        (lambda i: i.issue("bob", not_before_s=600), "not valid yet"),
        (lambda i: i.issue("bob", issuer="https://evil.example"), "another issuer"),
        (lambda i: i.issue("bob", audience="someone-else"), "another audience"),
        (lambda i: i.issue("bob")[:-6] + "AAAAAA", "signature"),
        (lambda i: "not-a-token", "not a valid token"),
    ],
)
async def test_bad_tokens_are_refused_with_the_reason(issuer: LocalIssuer, make, why) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnauthenticatedError, match=why):
        await verifier(issuer).principal(make(issuer))


async def test_symmetric_and_unsigned_tokens_are_refused(issuer: LocalIssuer) -> None:
    import jwt

    claims = {"sub": "bob", "iss": LOCAL_ISSUER, "aud": LOCAL_AUDIENCE, "exp": 4102444800}
    # The confusion attack signs with the public key as an HMAC secret; any HS* is refused
    # before a key is even looked up.
    for token in (
        jwt.encode(claims, "a-shared-secret-of-32-bytes-or-more!", algorithm="HS256"),
        jwt.encode(claims, "", algorithm="none"),
    ):
        with pytest.raises(UnauthenticatedError, match="not accepted"):
            await verifier(issuer).principal(token)


async def test_a_key_rotated_away_stops_verifying(issuer: LocalIssuer, tmp_path: Path) -> None:
    # Re-read at every call: the rotation is seen at once, verified tokens included.
    check = verifier(issuer, refresh_interval_s=1e-9)
    old_token = issuer.issue("bob")
    assert (await check.principal(old_token)).subject == "user:bob"
    assert (await check.principal(old_token)).subject == "user:bob", "again, from the cache"
    successor = LocalIssuer(tmp_path / "next", key_id="local-2").ensure()
    # Rotation: the JWKS now holds only the successor's key, which signs new tokens.
    issuer.publish([successor])
    assert (await check.principal(successor.issue("carol"))).subject == "user:carol"
    with pytest.raises(UnauthenticatedError, match="not one the issuer publishes"):
        await check.principal(old_token)
