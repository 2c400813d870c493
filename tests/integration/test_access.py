"""Every call checked against its caller, against real services, nats-server and InfluxDB:
tokens, API keys, device keys, role bindings, revocation of open streams, audit events and
mutual TLS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import nats
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from twinstack.api.access.v1 import access_pb2, access_pb2_grpc
from twinstack.api.common.v1 import events_pb2
from twinstack.api.registry.v1 import registry_pb2
from twinstack.api.state.v1 import state_pb2
from twinstack.common.server import GrpcServer
from twinstack.devstack import LocalCertificateAuthority, LocalIssuer
from twinstack.ingestion.app import IngestionApp
from twinstack.ingestion.settings import IngestionSettings
from twinstack.registry.app import RegistryApp
from twinstack.registry.settings import RegistrySettings
from twinstack.sdk import (
    AlreadyExistsError,
    ApiError,
    AsyncClient,
    ConnectConfig,
    Endpoints,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    Point,
    QuotaExceededError,
    RevisionMismatchError,
    UnauthenticatedError,
)
from twinstack.sdk.models import example_model_sources
from twinstack.simulation.app import SimulationApp
from twinstack.simulation.settings import SimulationSettings
from twinstack.state.app import StateApp
from twinstack.state.settings import StateSettings

DEVICE = "dtmi:twinstack:test:Device;1"
E = TypeVar("E", bound=Exception)


@dataclass
class Secured:
    """Registry, ingestion and state with authentication on, and a local issuer."""

    issuer: LocalIssuer
    endpoints: Endpoints
    admin: AsyncClient
    settings: dict[str, Any]

    def client(self, token: str | None) -> AsyncClient:
        return AsyncClient(ConnectConfig(self.endpoints, token=token, timeout_s=10, retry=None))

    def as_user(self, subject: str, *roles: str, **claims: Any) -> AsyncClient:
        return self.client(self.issuer.issue(subject, roles=roles, **claims))


@dataclass
class _ModelsThroughSdk:
    """What store_test_models calls, carried by an authenticated SDK client."""

    client: AsyncClient

    async def CreateModels(self, request: registry_pb2.CreateModelsRequest) -> Any:  # noqa: N802
        return await self.client.registry.create_models(request.sources)


@pytest.fixture
async def secured(
    infra_settings: dict[str, Any], tmp_path: Path, store_test_models: Any
) -> AsyncIterator[Secured]:
    issuer = LocalIssuer(tmp_path / "auth").ensure()
    settings = {**infra_settings, **issuer.service_settings()}
    servers = [
        GrpcServer(RegistrySettings(**settings), RegistryApp(RegistrySettings(**settings))),
        GrpcServer(IngestionSettings(**settings), IngestionApp(IngestionSettings(**settings))),
        GrpcServer(StateSettings(**settings), StateApp(StateSettings(**settings))),
    ]
    started: list[GrpcServer] = []
    try:
        for server in servers:
            await server.start()
            started.append(server)
        endpoints = Endpoints(
            registry=f"127.0.0.1:{servers[0].port}",
            ingestion=f"127.0.0.1:{servers[1].port}",
            state=f"127.0.0.1:{servers[2].port}",
        )
        admin = AsyncClient(ConnectConfig(endpoints, token=issuer.admin_token, timeout_s=10))
        try:
            await store_test_models(_ModelsThroughSdk(admin))
            yield Secured(issuer, endpoints, admin, settings)
        finally:
            await admin.close()
    finally:
        for server in reversed(started):
            await server.stop()


async def denied(call: Awaitable[Any], kind: type[E]) -> E:
    with pytest.raises(kind) as raised:
        await call
    return raised.value


async def twin_exists(client: AsyncClient, twin_id: str) -> bool:
    try:
        await client.registry.get_twin(twin_id)
    except NotFoundError:
        return False
    return True


async def state_or_none(client: AsyncClient, twin_id: str) -> Any:
    try:
        return await client.state.get_state(twin_id)
    except NotFoundError:
        return None


async def test_bad_credentials_are_refused_and_change_nothing(secured: Secured) -> None:
    issuer = secured.issuer
    stranger = LocalIssuer(issuer.directory.parent / "stranger", key_id="stranger-1").ensure()
    bad = {
        "no credential": None,
        "expired": issuer.issue("eve", roles=("admin",), ttl_s=-300),
        "not yet valid": issuer.issue("eve", roles=("admin",), not_before_s=900),
        "wrong issuer": issuer.issue("eve", roles=("admin",), issuer="https://evil.example"),
        "wrong audience": issuer.issue("eve", roles=("admin",), audience="another-app"),
        "forged signature": issuer.issue("eve", roles=("admin",))[:-8] + "AAAAAAAA",
        "a key the issuer does not publish": stranger.issue("eve", roles=("admin",)),
        "garbage": "not.a.token",
        "unknown api key": "tsk_0123456789abcdef_" + "A" * 43,
    }
    for why, token in bad.items():
        client = secured.client(token)
        try:
            error = await denied(
                client.registry.create_twin("guarded-1", DEVICE), UnauthenticatedError
            )
            assert error.code == grpc.StatusCode.UNAUTHENTICATED, why
            assert error.reason == "UNAUTHENTICATED", why
            await denied(client.registry.get_twin("guarded-1"), UnauthenticatedError)
        finally:
            await client.close()
    assert not await twin_exists(secured.admin, "guarded-1"), "nothing was created"

    # Probes stay open; reflection needs a principal.
    async with grpc.aio.insecure_channel(secured.endpoints.registry) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)
        response = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        reflection: Any = reflection_pb2_grpc.ServerReflectionStub(cast(Any, channel))
        listing = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in reflection.ServerReflectionInfo(iter([listing]), timeout=5):
                pass
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        metadata = (("authorization", f"Bearer {issuer.admin_token}"),)
        names = {
            service.name
            async for answer in reflection.ServerReflectionInfo(
                iter([listing]), metadata=metadata, timeout=5
            )
            for service in answer.list_services_response.service
        }
        assert "twinstack.api.access.v1.AccessService" in names


async def test_each_role_gets_its_verbs_and_no_others(secured: Secured) -> None:
    await secured.admin.registry.create_twin("roles-1", DEVICE)
    viewer = secured.as_user("vera", "viewer")
    operator = secured.as_user("otto", "operator")
    modeler = secured.as_user("mona", "modeler")
    nobody = secured.as_user("nils")
    try:
        assert (await viewer.registry.get_twin("roles-1")).id == "roles-1"
        for client in (viewer, operator):
            error = await denied(
                client.registry.create_twin("roles-2", DEVICE),
                PermissionDeniedError,
            )
            assert "twins.write" in error.message
            assert error.reason == "PERMISSION_DENIED"
        await denied(
            viewer.telemetry.ingest([Point("roles-1", {"temp": 1.0})]), PermissionDeniedError
        )
        await denied(viewer.state.set_desired("roles-1", {"setpoint": 5.0}), PermissionDeniedError)
        # Actuation is granted apart: a modeler shapes twins but does not drive them.
        await denied(modeler.state.set_desired("roles-1", {"setpoint": 5.0}), PermissionDeniedError)
        await denied(nobody.registry.get_twin("roles-1"), PermissionDeniedError)
        await denied(modeler.access.create_api_key("k", "viewer"), PermissionDeniedError)
        assert not await twin_exists(secured.admin, "roles-2")

        accepted = await operator.telemetry.ingest([Point("roles-1", {"temp": 21.5})])
        assert accepted.accepted_points == 1
        await modeler.registry.create_twin("roles-2", DEVICE)
        assert await twin_exists(secured.admin, "roles-2")
        await modeler.registry.delete_twin("roles-2")
        me = await operator.access.who_am_i()
        assert me.principal.subject == "user:otto"
        assert "desired.write" in me.verbs
        assert "twins.write" not in me.verbs
    finally:
        for client in (viewer, operator, modeler, nobody):
            await client.close()


async def test_a_tenant_this_platform_does_not_serve_is_refused(secured: Secured) -> None:
    outsider = secured.as_user("olaf", "admin", tenant="acme")
    try:
        error = await denied(outsider.registry.list_twins().__anext__(), PermissionDeniedError)
        assert "acme" in error.message
    finally:
        await outsider.close()


async def test_api_keys_device_keys_and_their_revocation(secured: Secured, eventually: Any) -> None:
    admin = secured.admin
    for twin_id in ("dev-a", "dev-b"):
        await admin.registry.create_twin(twin_id, DEVICE)
    created = await admin.access.create_api_key("line-gateway", "device", twin_ids=["dev-a"])
    assert created.secret.startswith(f"tsk_{created.key.id}_")
    listed = await admin.access.list_api_keys()
    assert [k.name for k in listed] == ["line-gateway"]
    assert created.secret.rsplit("_", 1)[1] not in str(listed), "the secret is never listed"

    device = secured.client(created.secret)
    try:
        ingested = await device.telemetry.ingest([Point("dev-a", {"temp": 30.0})])
        assert ingested.accepted_points == 1
        error = await denied(
            device.telemetry.ingest(
                [Point("dev-a", {"temp": 31.0}), Point("dev-b", {"temp": 1.0})]
            ),
            PermissionDeniedError,
        )
        assert "dev-b" in error.message
        await denied(device.registry.get_twin("dev-a"), PermissionDeniedError)
        state = await eventually(
            lambda: state_or_none(admin, "dev-a"),
            lambda s: s is not None and "temp" in s.reported,
        )
        assert state.reported["temp"].value.double_value == 30.0, "the refused batch wrote nothing"

        revoked = await admin.access.revoke_api_key(created.key.id)
        assert revoked.revoked
        await denied(
            device.telemetry.ingest([Point("dev-a", {"temp": 32.0})]), UnauthenticatedError
        )
        again = await admin.access.create_api_key("line-gateway", "operator", ttl_s=3600)
        assert again.key.HasField("expires_at")
        await denied(admin.access.create_api_key("line-gateway", "viewer"), AlreadyExistsError)
        invalid = await denied(
            admin.access.create_api_key("bad name!", "nope"), InvalidArgumentError
        )
        assert {v.field for v in invalid.violations} == {"name", "role"}
        await denied(admin.access.revoke_api_key("0000000000000000"), NotFoundError)
    finally:
        await device.close()


async def test_bindings_grant_deny_and_end_an_open_watch(secured: Secured) -> None:
    admin = secured.admin
    await admin.registry.create_twin("watched-1", DEVICE)
    member = secured.as_user("olga", groups=("ops",))
    try:
        await denied(member.state.get_state("watched-1"), PermissionDeniedError)
        binding = await admin.access.put_role_binding("ops-viewers", "group:ops", "viewer")
        assert binding.tenant == "default"
        assert binding.revision > 0
        explained = await admin.access.check_access(
            "state.read", subject="user:olga", groups=["ops"]
        )
        assert explained.allowed
        assert "ops-viewers" in explained.explanation

        updates: list[Any] = []
        first_update = asyncio.Event()
        ended: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

        async def watch() -> None:
            try:
                async for update in member.state.watch(["watched-1"]):
                    updates.append(update)
                    first_update.set()
            except Exception as error:
                ended.set_result(error)
            else:
                ended.set_result(None)

        watcher = asyncio.create_task(watch())
        await admin.telemetry.ingest([Point("watched-1", {"temp": 5.0})])
        async with asyncio.timeout(20):
            await first_update.wait()
        await admin.access.delete_role_binding("ops-viewers")
        async with asyncio.timeout(10):
            outcome = await ended
        assert isinstance(outcome, PermissionDeniedError), outcome
        await watcher
        await denied(member.state.get_state("watched-1"), PermissionDeniedError)
    finally:
        await member.close()


async def test_a_deny_beats_every_grant_and_scopes_are_refused(secured: Secured) -> None:
    admin = secured.admin
    strong = secured.as_user("sam", "admin")
    try:
        assert (await strong.access.who_am_i()).principal.subject == "user:sam"
        first = await admin.access.put_role_binding("no-sam", "user:sam", deny=True)
        replaced = await admin.access.put_role_binding(
            "no-sam", "user:sam", deny=True, expected_revision=first.revision
        )
        assert replaced.revision > first.revision
        error = await denied(strong.access.who_am_i(), PermissionDeniedError)
        assert "no-sam" in error.message
        stale = await denied(
            admin.access.put_role_binding(
                "no-sam", "user:sam", deny=True, expected_revision=first.revision
            ),
            RevisionMismatchError,
        )
        assert stale.current_revision == replaced.revision
    finally:
        await strong.close()
    request = access_pb2.PutRoleBindingRequest(
        binding=access_pb2.RoleBinding(
            id="scoped",
            subject="user:olga",
            role="viewer",
            scope="query:FROM site-1 FOLLOW contains",
        )
    )
    async with grpc.aio.insecure_channel(secured.endpoints.registry) as channel:
        stub = access_pb2_grpc.AccessServiceStub(channel)
        metadata = (("authorization", f"Bearer {secured.issuer.admin_token}"),)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.PutRoleBinding(request, metadata=metadata, timeout=5)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        refused = ApiError.from_rpc_error(raised.value)
        assert isinstance(refused, InvalidArgumentError)
        assert [v.field for v in refused.violations] == ["binding.scope"]
    assert [b.id for b in await admin.access.list_role_bindings()] == ["no-sam"]


async def test_writes_and_denials_are_audited(secured: Secured, infra_settings: Any) -> None:
    connection = await nats.connect(infra_settings["nats_url"])
    records: list[access_pb2.AuditRecord] = []
    denial_seen = asyncio.Event()

    async def collect(message: Any) -> None:
        record = access_pb2.AuditRecord.FromString(message.data)
        records.append(record)
        if record.outcome == "denied":
            denial_seen.set()

    await connection.subscribe("evt.audit.>", cb=collect)
    viewer = secured.as_user("vera", "viewer")
    try:
        await secured.admin.registry.create_twin("audited-1", DEVICE)
        await viewer.registry.get_twin("audited-1")
        await denied(viewer.registry.delete_twin("audited-1"), PermissionDeniedError)
        # The denial is published after the write's record, on the same connection, in order.
        async with asyncio.timeout(10):
            await denial_seen.wait()
    finally:
        await viewer.close()
        await connection.close()
    allowed = [r for r in records if r.outcome == "allowed"]
    refused = [r for r in records if r.outcome == "denied"]
    assert ("user:local-admin", "twins.write", "OK") in {
        (r.subject, r.verb, r.status) for r in allowed
    }
    assert [(r.subject, r.verb, r.resource, r.status) for r in refused] == [
        ("user:vera", "twins.delete", "audited-1", "PERMISSION_DENIED")
    ]
    assert all(r.tenant == "default" for r in records)
    assert not any(r.verb == "twins.read" for r in records), "reads that pass are not audited"


async def test_mutual_tls_names_the_calling_service(
    infra_settings: dict[str, Any], tmp_path: Path
) -> None:
    authority = LocalCertificateAuthority(tmp_path / "ca").ensure()
    server_cert, server_key = authority.issue("registry")
    client_cert, client_key = authority.issue("simulation")
    settings = RegistrySettings(
        **{**infra_settings, "auth_mode": "required"},
        tls_cert_file=server_cert,
        tls_key_file=server_key,
        tls_client_ca_file=authority.cert_path,
    )
    server = GrpcServer(settings, RegistryApp(settings))
    await server.start()
    target = f"127.0.0.1:{server.port}"
    try:
        mutual = AsyncClient(
            ConnectConfig(
                Endpoints(registry=target),
                root_certificates_file=authority.cert_path,
                client_certificate_file=client_cert,
                client_key_file=client_key,
                timeout_s=10,
                retry=None,
            )
        )
        try:
            # A service has no rights of its own until bound; it is identified all the same.
            error = await denied(mutual.access.who_am_i(), PermissionDeniedError)
        finally:
            await mutual.close()
        assert "service:simulation" in error.message
        without_certificate = AsyncClient(
            ConnectConfig(
                Endpoints(registry=target),
                root_certificates_file=authority.cert_path,
                timeout_s=5,
                retry=None,
            )
        )
        try:
            with pytest.raises(ApiError) as raised:
                await without_certificate.access.who_am_i()
            assert raised.value.code == grpc.StatusCode.UNAVAILABLE, "no handshake"
        finally:
            await without_certificate.close()
        async with grpc.aio.insecure_channel(target) as plaintext:
            health: Any = health_pb2_grpc.HealthStub(plaintext)
            with pytest.raises(grpc.aio.AioRpcError):
                await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    finally:
        await server.stop()


async def test_a_binding_scoped_to_a_model_reaches_only_its_twins(
    secured: Secured, eventually: Any
) -> None:
    admin = secured.admin
    beacon = "dtmi:twinstack:test:Beacon;1"
    await admin.registry.create_twin("scoped-in", DEVICE)
    await admin.registry.create_twin("scoped-out", beacon)
    await admin.telemetry.ingest([Point("scoped-out", {"ping": 1.0})])
    await admin.telemetry.ingest([Point("scoped-in", {"temp": 1.0})])
    for twin_id in ("scoped-in", "scoped-out"):
        await eventually(lambda t=twin_id: state_or_none(admin, t), lambda s: s is not None)
    await admin.access.put_role_binding(
        "mo-devices", "user:mo", "operator", scope=f"model:{DEVICE}"
    )
    explained = await admin.access.check_access("twins.read", subject="user:mo")
    assert not explained.allowed
    assert DEVICE in explained.explanation
    mo = secured.as_user("mo")
    try:
        assert (await mo.access.who_am_i()).principal.subject == "user:mo"
        assert (await mo.registry.get_twin("scoped-in")).id == "scoped-in"
        # Outside the scope, a twin reads exactly as one that does not exist.
        outside = await denied(mo.registry.get_twin("scoped-out"), NotFoundError)
        missing = await denied(mo.registry.get_twin("no-such-twin"), NotFoundError)
        assert outside.message.replace("scoped-out", "X") == missing.message.replace(
            "no-such-twin", "X"
        )
        listed = [t.id async for t in mo.registry.list_twins()]
        assert "scoped-in" in listed
        assert "scoped-out" not in listed
        beacons = f"WHERE IS_OF_MODEL('{beacon}')"
        assert [t.id async for t in admin.registry.query_twins(beacons)] == ["scoped-out"]
        assert [t.id async for t in mo.registry.query_twins(beacons)] == []
        devices = f"WHERE IS_OF_MODEL('{DEVICE}')"
        assert "scoped-in" in [t.id async for t in mo.registry.query_twins(devices)]
        assert (await mo.state.get_state("scoped-in")).twin_id == "scoped-in"
        await denied(mo.state.get_state("scoped-out"), NotFoundError)
        states = await mo.state.get_states(["scoped-in", "scoped-out"])
        assert list(states.missing_twin_ids) == ["scoped-out"]
        refused = await denied(
            mo.telemetry.ingest([Point("scoped-out", {"ping": 2.0})]), InvalidArgumentError
        )
        assert "unknown twin 'scoped-out'" in refused.violations[0].description
        await mo.telemetry.ingest([Point("scoped-in", {"temp": 2.0})])
        await mo.state.set_desired("scoped-in", {"setpoint": 20.0})
        await denied(mo.state.set_desired("scoped-out", {"setpoint": 20.0}), NotFoundError)
        now = datetime.now(UTC)
        since = now - timedelta(hours=1)
        await mo.state.query_history(["scoped-in"], ["temp"], since, now)
        await denied(mo.state.query_history(["scoped-out"], ["ping"], since, now), NotFoundError)
        # Calls that cannot check each twin take tenant-wide grants only.
        await denied(mo.registry.list_models().__anext__(), PermissionDeniedError)
        await denied(mo.registry.create_twin("scoped-new", beacon), PermissionDeniedError)

        # A Watch of both twins sends the states it may see, and nothing of the other.
        seen: list[str] = []
        async for update in mo.state.watch(["scoped-in", "scoped-out"], timeout_s=20):
            seen.append(update.state.twin_id)
            reported = update.state.reported
            if "temp" in reported and reported["temp"].value.double_value == 3.0:
                break
            if len(seen) == 1:
                await admin.telemetry.ingest([Point("scoped-out", {"ping": 3.0})])
                await admin.telemetry.ingest([Point("scoped-in", {"temp": 3.0})])
        assert set(seen) == {"scoped-in"}
    finally:
        await mo.close()


async def test_a_binding_scoped_to_a_subgraph_follows_the_graph(
    secured: Secured, eventually: Any
) -> None:
    admin = secured.admin
    examples = "dtmi:twinstack:examples:"
    await admin.registry.create_twin("line-s1", f"{examples}ProductionLine;1")
    await admin.registry.create_twin("line-s2", f"{examples}ProductionLine;1")
    for pump in ("pump-s1", "pump-s2"):
        await admin.registry.create_twin(pump, f"{examples}Pump;1")
        await admin.telemetry.ingest([Point(pump, {"temperature_c": 40.0})])
        await eventually(lambda t=pump: state_or_none(admin, t), lambda s: s is not None)
    await admin.registry.create_relationship("line-s1", "contains", "pump-s1")
    await admin.registry.create_relationship("line-s2", "contains", "pump-s2")
    binding = await admin.access.put_role_binding(
        "sue-line", "user:sue", "operator", scope="from 'line-s1' follow contains depth 1"
    )
    assert binding.scope == "FROM 'line-s1' FOLLOW contains DEPTH 1", "stored canonical"
    sue = secured.as_user("sue")
    try:
        assert (await sue.registry.get_twin("pump-s1")).id == "pump-s1"
        assert (await sue.registry.get_twin("line-s1")).id == "line-s1", "the root is in scope"
        await denied(sue.registry.get_twin("pump-s2"), NotFoundError)
        pumps = f"WHERE IS_OF_MODEL('{examples}Pump;1')"
        assert [t.id async for t in sue.registry.query_twins(pumps)] == ["pump-s1"]
        assert (await sue.state.get_state("pump-s1")).twin_id == "pump-s1"
        await denied(sue.state.get_state("pump-s2"), NotFoundError)
        await sue.telemetry.ingest([Point("pump-s1", {"temperature_c": 41.0})])
        refused = await denied(
            sue.telemetry.ingest([Point("pump-s2", {"temperature_c": 41.0})]),
            InvalidArgumentError,
        )
        assert "unknown twin 'pump-s2'" in refused.violations[0].description
        # Calls that cannot check each twin take tenant-wide grants only.
        await denied(sue.registry.list_models().__anext__(), PermissionDeniedError)

        # The scope is the graph as it is now: a twin related into it is in, in every service.
        await admin.registry.create_relationship("line-s1", "contains", "pump-s2")
        await eventually(lambda: twin_exists(sue, "pump-s2"), timeout_s=20)
        await eventually(lambda: state_or_none(sue, "pump-s2"), lambda s: s is not None)

        async def ingested() -> bool:
            try:
                await sue.telemetry.ingest([Point("pump-s2", {"temperature_c": 42.0})])
            except InvalidArgumentError:
                return False
            return True

        await eventually(ingested, timeout_s=20)
    finally:
        await sue.close()
    too_deep = await denied(
        admin.access.put_role_binding(
            "sue-deep", "user:sue", "viewer", scope="FROM 'line-s1' FOLLOW contains DEPTH 11"
        ),
        InvalidArgumentError,
    )
    assert too_deep.violations[0].description == "DEPTH is 1 to 10"


def pump_rule(rule_id: str, *, model_id: str = "", twin_id: str = "") -> state_pb2.AlertRule:
    rule = state_pb2.AlertRule(
        id=rule_id,
        field="temperature_c",
        severity=events_pb2.SEVERITY_WARNING,
        threshold=state_pb2.ThresholdCondition(
            direction=state_pb2.ThresholdCondition.DIRECTION_ABOVE, raise_at=50, clear_at=45
        ),
    )
    if model_id:
        rule.model_id = model_id
    else:
        rule.twin_id = twin_id
    return rule


async def test_scopes_hold_in_relationships_alerts_rules_and_simulation(
    secured: Secured, eventually: Any
) -> None:
    admin = secured.admin
    pump = "dtmi:twinstack:examples:Pump;1"
    await admin.registry.create_twin("line-r1", "dtmi:twinstack:examples:ProductionLine;1")
    await admin.registry.create_twin("pump-r1", pump)
    await admin.registry.create_twin("pump-r2", pump)
    await admin.registry.create_relationship("line-r1", "contains", "pump-r1")
    await admin.state.put_alert_rule(pump_rule("hot-pumps", model_id=pump))

    async def alerted(twin_id: str) -> bool:
        # Again until the state service has the rule, which it learns by a watch.
        await admin.telemetry.ingest([Point(twin_id, {"temperature_c": 60.0, "load": 0.5})])
        state = await state_or_none(admin, twin_id)
        return state is not None and "hot-pumps" in state.alerts

    for twin_id in ("pump-r1", "pump-r2"):
        await eventually(lambda t=twin_id: alerted(t), timeout_s=30, interval_s=0.5)
    subgraph = "FROM 'line-r1' FOLLOW contains DEPTH 1"
    for role in ("modeler", "operator", "analyst"):
        await admin.access.put_role_binding(f"rita-{role}", "user:rita", role, scope=subgraph)
    settings = SimulationSettings(**secured.settings, ray_jobs_address="http://127.0.0.1:9")
    simulation = GrpcServer(settings, SimulationApp(settings))
    await simulation.start()
    endpoints = replace(secured.endpoints, simulation=f"127.0.0.1:{simulation.port}")
    rita = AsyncClient(
        ConnectConfig(endpoints, token=secured.issuer.issue("rita"), timeout_s=60, retry=None)
    )
    try:
        # Relationships: both ends in scope, and edges to twins outside it are not seen.
        await admin.registry.create_relationship("pump-r1", "feeds", "pump-r2")
        hidden = await denied(
            rita.registry.create_relationship("pump-r1", "feeds", "pump-r2"), NotFoundError
        )
        assert hidden.message == "no twin 'pump-r2'"
        assert [r.target_id async for r in rita.registry.list_relationships("pump-r1")] == []
        assert [r.target_id async for r in admin.registry.list_relationships("pump-r1")] == [
            "pump-r2"
        ]
        assert [r.target_id async for r in rita.registry.list_relationships("line-r1")] == [
            "pump-r1"
        ]
        assert [
            r.id async for r in rita.registry.list_relationships("pump-r2", incoming=True)
        ] == []
        (feeds,) = [r.id async for r in admin.registry.list_relationships("pump-r1")]
        await denied(rita.registry.delete_relationship("pump-r1", feeds), NotFoundError)

        # Alerts and rules: those of twins in scope only.
        assert [a.twin_id async for a in rita.state.list_alerts()] == ["pump-r1"]
        await denied(rita.state.acknowledge_alert("pump-r2", "hot-pumps"), NotFoundError)
        acknowledged = await rita.state.acknowledge_alert("pump-r1", "hot-pumps")
        assert acknowledged.acknowledged_by == "user:rita"
        assert [r.id async for r in rita.state.list_alert_rules()] == [], "a model-wide rule"
        await denied(rita.state.delete_alert_rule("hot-pumps"), NotFoundError)
        await denied(
            rita.state.put_alert_rule(pump_rule("mine", twin_id="pump-r2")), PermissionDeniedError
        )
        await denied(
            rita.state.put_alert_rule(pump_rule("hot-pumps", twin_id="pump-r1")),
            PermissionDeniedError,
        )
        await rita.state.put_alert_rule(pump_rule("mine", twin_id="pump-r1"))
        assert [r.id async for r in rita.state.list_alert_rules()] == ["mine"]

        # Simulation: a twin outside the scope is one that does not exist.
        ran = await rita.simulation.run_scenario(["pump-r1"], horizon_s=60, step_s=1)
        assert [t.twin_id for t in ran.twins] == ["pump-r1"]
        outside = await denied(
            rita.simulation.run_scenario(["pump-r2"], horizon_s=60, step_s=1), NotFoundError
        )
        missing = await denied(
            rita.simulation.run_scenario(["pump-r9"], horizon_s=60, step_s=1), NotFoundError
        )
        assert outside.message.replace("r2", "r9") == missing.message
        await denied(
            rita.simulation.forecast(["pump-r2"], horizon_s=60, step_s=1, samples=10),
            NotFoundError,
        )
        boss = AsyncClient(
            ConnectConfig(endpoints, token=secured.issuer.admin_token, timeout_s=60, retry=None)
        )
        try:
            both = await boss.simulation.run_scenario(
                ["pump-r1", "pump-r2"], horizon_s=60, step_s=1
            )
        finally:
            await boss.close()
        assert len(both.twins) == 2
    finally:
        await rita.close()
        await simulation.stop()


async def test_two_tenants_with_the_same_ids_and_fields_are_isolated(
    secured: Secured, eventually: Any
) -> None:
    """Tenant ``tenant-iso`` is created by the platform's admin and holds the same models, twin
    ids, field names and rule ids as the default tenant: each sees, queries, watches, reads the
    history of and simulates only its own, and cannot even tell the other's ids exist."""
    admin = secured.admin
    pump = "dtmi:twinstack:examples:Pump;1"
    created = await admin.access.create_tenant(
        "tenant-iso", display_name="Isolation", create_admin_key=True
    )
    assert created.admin_key.tenant == "tenant-iso"
    other = secured.client(created.admin_key_secret)
    stranger = secured.as_user("sam", "admin", tenant="tenant-unknown")
    settings = SimulationSettings(**secured.settings, ray_jobs_address="http://127.0.0.1:9")
    simulation = GrpcServer(settings, SimulationApp(settings))
    await simulation.start()
    endpoints = replace(secured.endpoints, simulation=f"127.0.0.1:{simulation.port}")
    simulating = {
        "default": AsyncClient(
            ConnectConfig(endpoints, token=secured.issuer.admin_token, timeout_s=60, retry=None)
        ),
        "other": AsyncClient(
            ConnectConfig(endpoints, token=created.admin_key_secret, timeout_s=60, retry=None)
        ),
    }
    try:
        # A token naming a tenant no administrator created is refused everything.
        refused = await denied(stranger.registry.list_twins().__anext__(), PermissionDeniedError)
        assert "tenant-unknown" in refused.message
        # Tenants are the platform admin's to list; a tenant's admin sees its own only.
        names = [t.name for t in await admin.access.list_tenants()]
        assert names[0] == "default"
        assert "tenant-iso" in names
        await denied(other.access.list_tenants(), PermissionDeniedError)
        assert (await other.access.get_tenant()).name == "tenant-iso"
        await denied(other.access.get_tenant("default"), PermissionDeniedError)
        # A lost first key is replaced by the platform's admin, never by the tenant's own.
        await denied(other.access.create_tenant_admin_key("tenant-iso"), PermissionDeniedError)
        await denied(admin.access.create_tenant_admin_key("tenant-none"), NotFoundError)
        spare = await admin.access.create_tenant_admin_key("tenant-iso")
        assert (spare.key.tenant, spare.key.role) == ("tenant-iso", "admin")
        recovered = secured.client(spare.secret)
        try:
            assert (await recovered.access.who_am_i()).principal.tenant == "tenant-iso"
        finally:
            await recovered.close()

        # The same models under the same DTMIs, and the same twin ids.
        await other.registry.create_models(example_model_sources())
        await admin.registry.create_twin("iso-pump", pump, {"rated_flow_m3_h": 10.0})
        await admin.registry.create_twin("iso-only-default", pump)
        mine = await other.registry.create_twin("iso-pump", pump, {"rated_flow_m3_h": 99.0})
        assert (mine.id, mine.model_id) == ("iso-pump", pump)
        assert (await admin.registry.get_twin("iso-pump")).properties[
            "rated_flow_m3_h"
        ].double_value == 10.0
        assert (await other.registry.get_twin("iso-pump")).properties[
            "rated_flow_m3_h"
        ].double_value == 99.0
        hidden = await denied(other.registry.get_twin("iso-only-default"), NotFoundError)
        missing = await denied(other.registry.get_twin("iso-nothing"), NotFoundError)
        assert hidden.message.replace("iso-only-default", "X") == missing.message.replace(
            "iso-nothing", "X"
        )
        assert "tenant-iso" not in missing.message
        assert [t.id async for t in other.registry.list_twins()] == ["iso-pump"]
        pumps = f"WHERE IS_OF_MODEL('{pump}')"
        assert [t.id async for t in other.registry.query_twins(pumps)] == ["iso-pump"]
        assert "iso-pump" in [t.id async for t in admin.registry.query_twins(pumps)]
        own_models = {m.id async for m in other.registry.list_models()}
        assert pump in own_models
        assert "dtmi:twinstack:test:Beacon;1" not in own_models, "a default tenant's model"
        assert own_models < {m.id async for m in admin.registry.list_models()}
        # No caller can spell another tenant's id.
        await denied(other.registry.get_twin("default/iso-pump"), InvalidArgumentError)
        await denied(admin.registry.get_twin("tenant-iso/iso-pump"), InvalidArgumentError)
        await denied(
            admin.registry.query_twins("FROM 'tenant-iso/iso-pump' FOLLOW *").__anext__(),
            InvalidArgumentError,
        )

        # Telemetry with the same field names: each tenant's state and history are its own.
        await admin.telemetry.ingest([Point("iso-pump", {"temperature_c": 20.0, "load": 0.1})])
        await other.telemetry.ingest([Point("iso-pump", {"temperature_c": 80.0, "load": 0.9})])
        await denied(
            other.telemetry.ingest([Point("iso-only-default", {"temperature_c": 1.0})]),
            InvalidArgumentError,
        )
        spelled = await denied(
            admin.telemetry.ingest([Point("tenant-iso/iso-pump", {"temperature_c": 1.0})]),
            InvalidArgumentError,
        )
        assert spelled.violations[0].description == "ids cannot contain '/'"
        device_key = await other.access.create_api_key("iso-dev", "device", twin_ids=["iso-pump"])
        assert list(device_key.key.twin_ids) == ["iso-pump"]
        device = secured.client(device_key.secret)
        try:
            await device.telemetry.ingest([Point("iso-pump", {"load": 0.5})])
            await denied(
                device.telemetry.ingest([Point("iso-only-default", {"load": 0.5})]),
                PermissionDeniedError,
            )
        finally:
            await device.close()

        def temperature(state: Any) -> float | None:
            if state is None or "temperature_c" not in state.reported:
                return None
            return float(state.reported["temperature_c"].value.double_value)

        for client, expected in ((admin, 20.0), (other, 80.0)):
            await eventually(
                lambda c=client: state_or_none(c, "iso-pump"),
                lambda s, e=expected: temperature(s) == e,
                timeout_s=30,
            )
        now = datetime.now(UTC)

        async def history(client: AsyncClient) -> list[float]:
            series = await client.state.query_history(
                ["iso-pump"], ["temperature_c"], now - timedelta(hours=1), now + timedelta(1)
            )
            return [v for s in series for v in s.double_values.values]

        await eventually(lambda: history(other), lambda values: values == [80.0], timeout_s=30)
        await eventually(lambda: history(admin), lambda values: values == [20.0], timeout_s=30)
        (series,) = await other.state.query_history(
            ["iso-pump"], ["temperature_c"], now - timedelta(hours=1), now + timedelta(1)
        )
        assert series.twin_id == "iso-pump"

        # A Watch of every twin sends the tenant's own twins only.
        seen: list[str] = []
        async for update in other.state.watch(all_twins=True, timeout_s=20):
            seen.append(update.state.twin_id)
            if temperature(update.state) == 81.0:
                break
            if len(seen) == 1:
                await admin.telemetry.ingest([Point("iso-pump", {"temperature_c": 21.0})])
                await admin.telemetry.ingest([Point("iso-only-default", {"temperature_c": 5.0})])
                await other.telemetry.ingest([Point("iso-pump", {"temperature_c": 81.0})])
        assert set(seen) == {"iso-pump"}

        # Alert rules under one id, each firing on its own tenant's twins only.
        await admin.state.put_alert_rule(pump_rule("iso-hot", twin_id="iso-pump"))
        rule = await other.state.put_alert_rule(pump_rule("iso-hot", model_id=pump))
        assert (rule.id, rule.model_id) == ("iso-hot", pump)
        assert [r.id async for r in other.state.list_alert_rules()] == ["iso-hot"]

        async def alerted() -> bool:
            await other.telemetry.ingest([Point("iso-pump", {"temperature_c": 90.0})])
            state = await state_or_none(other, "iso-pump")
            return state is not None and "iso-hot" in state.alerts

        await eventually(alerted, timeout_s=30, interval_s=0.5)
        assert [(a.twin_id, a.rule_id) async for a in other.state.list_alerts()] == [
            ("iso-pump", "iso-hot")
        ]
        assert "iso-hot" not in (await admin.state.get_state("iso-only-default")).alerts

        # Simulation reads each tenant's own twin.
        ran = await simulating["other"].simulation.run_scenario(
            ["iso-pump"], horizon_s=60, step_s=1
        )
        assert [t.twin_id for t in ran.twins] == ["iso-pump"]
        assert ran.model_id == pump
        await denied(
            simulating["other"].simulation.run_scenario(
                ["iso-only-default"], horizon_s=60, step_s=1
            ),
            NotFoundError,
        )
        both = await simulating["default"].simulation.run_scenario(
            ["iso-pump", "iso-only-default"], horizon_s=60, step_s=1
        )
        assert [t.twin_id for t in both.twins] == ["iso-pump", "iso-only-default"]

        # The platform's admin gives the tenant quotas of its own; the others keep the settings'.
        await denied(
            other.access.update_tenant("tenant-iso", quotas={"max_twins": 100}),
            PermissionDeniedError,
        )
        updated = await admin.access.update_tenant(
            "tenant-iso", quotas={"max_twins": 1, "ingest_points_per_s": 0, "max_alert_rules": 1}
        )
        assert updated.quotas.max_twins == 1
        assert (await other.access.get_tenant()).quotas.ingest_points_per_s == 0
        over = await denied(other.registry.create_twin("iso-second", pump), QuotaExceededError)
        assert "tenant-iso" in over.message
        await admin.registry.create_twin("iso-second", pump)

        async def shut_out() -> bool:
            try:
                await other.telemetry.ingest([Point("iso-pump", {"temperature_c": 1.0})])
            except QuotaExceededError:
                return True
            return False

        async def rules_full() -> bool:
            try:
                await other.state.put_alert_rule(pump_rule("iso-second", model_id=pump))
            except QuotaExceededError as error:
                return error.quota == "TWINSTACK_TENANT_MAX_ALERT_RULES"
            await other.state.delete_alert_rule("iso-second")
            return False

        # Ingestion and state learn of the change by their own watches of the tenants.
        await eventually(shut_out, timeout_s=30, interval_s=0.2)
        await eventually(rules_full, timeout_s=30, interval_s=0.2)
        await admin.state.put_alert_rule(pump_rule("iso-second", twin_id="iso-pump"))
        await admin.telemetry.ingest([Point("iso-pump", {"temperature_c": 22.0})])
    finally:
        for client in (other, stranger, *simulating.values()):
            await client.close()
        await simulation.stop()
