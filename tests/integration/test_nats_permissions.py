"""Each service's NATS user, against a real nats-server with the platform's authorization
configuration: it does its own work, and nats-server itself refuses another service's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient

from twinstack.common.nats import JetStreamLayout, provision_jetstream, telemetry_subject
from twinstack.common.nats_permissions import SERVICES, authorization_block
from twinstack.devstack import NatsServer

PASSWORDS = {service: f"{service}-secret" for service in SERVICES}
# A refused JetStream request is never answered: this long is enough to tell.
REFUSED_AFTER_S = 0.5


@pytest.fixture
async def secured_nats(tmp_path: Path) -> AsyncIterator[NatsServer]:
    server = NatsServer(tmp_path / "nats", authorization=authorization_block(PASSWORDS, "adm1n"))
    server.start()
    try:
        admin = await nats.connect(server.url, user="admin", password="adm1n")
        await provision_jetstream(admin.jetstream(), JetStreamLayout())
        await admin.close()
        yield server
    finally:
        server.stop()


class Connection:
    """A service's connection, recording the permission errors nats-server sends it."""

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.violated = asyncio.Event()
        self.client: NatsClient | None = None

    async def open(self, url: str, service: str) -> Connection:
        async def on_error(error: Exception) -> None:
            if "permissions violation" in str(error).lower():
                self.violations.append(str(error).lower())
                self.violated.set()

        self.client = await nats.connect(
            url, user=service, password=PASSWORDS[service], error_cb=on_error
        )
        return self

    async def refused(self, operation: str, subject: str, action: object) -> None:
        """Runs ``action`` (a coroutine) and asserts nats-server refused ``subject``."""
        before = len(self.violations)
        self.violated.clear()
        try:
            await asyncio.wait_for(action, REFUSED_AFTER_S)  # type: ignore[arg-type]
        except (TimeoutError, nats.errors.TimeoutError):
            pass
        else:
            pytest.fail(f"{operation} was allowed")
        async with asyncio.timeout(5):
            while not any(subject.lower() in v for v in self.violations[before:]):
                await self.violated.wait()
                self.violated.clear()


async def connect(server: NatsServer, service: str) -> Connection:
    return await Connection().open(server.url, service)


async def test_a_wrong_password_cannot_connect(secured_nats: NatsServer) -> None:
    for credentials in ({"user": "registry", "password": "guess"}, {}):
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats.connect(
                secured_nats.url, allow_reconnect=False, connect_timeout=2, **credentials
            )


async def test_each_service_writes_its_own_and_is_refused_anothers(
    secured_nats: NatsServer,
) -> None:
    registry = await connect(secured_nats, "registry")
    ingestion = await connect(secured_nats, "ingestion")
    state = await connect(secured_nats, "state")
    simulation = await connect(secured_nats, "simulation")
    try:
        assert registry.client is not None
        assert ingestion.client is not None
        assert state.client is not None
        assert simulation.client is not None
        # Their own work.
        own_registry = await registry.client.jetstream().key_value("registry")
        assert await own_registry.put("twins.pump-1", b"twin") > 0
        ack = await ingestion.client.jetstream().publish(telemetry_subject("pump-1", 8), b"batch")
        assert ack.stream == "TELEMETRY"
        own_state = await state.client.jetstream().key_value("state_twins")
        assert await own_state.put("pump-1", b"state") > 0
        sweeps = await simulation.client.jetstream().key_value("sweeps")
        assert await sweeps.put("sweep-1", b"record") > 0
        # Reads they need: the registry's models and twins, and the telemetry they consume.
        for reader in (ingestion, state, simulation):
            assert reader.client is not None
            found = await (await reader.client.jetstream().key_value("registry")).get(
                "twins.pump-1"
            )
            assert found.value == b"twin"

        # Another service's data: refused by nats-server.
        ingestion_js = ingestion.client.jetstream(timeout=REFUSED_AFTER_S)
        registry_as_ingestion = await ingestion_js.key_value("registry")
        await ingestion.refused(
            "ingestion writing a twin",
            "$kv.registry.twins.pump-1",
            registry_as_ingestion.put("twins.pump-1", b"forged"),
        )
        state_as_ingestion = await ingestion_js.key_value("state_twins")
        await ingestion.refused(
            "ingestion reading live state",
            "kv_state_twins",
            state_as_ingestion.get("pump-1"),
        )
        state_js = state.client.jetstream(timeout=REFUSED_AFTER_S)
        await state.refused(
            "state publishing telemetry",
            "tel.",
            state_js.publish(telemetry_subject("pump-1", 8), b"forged"),
        )
        access_as_state = await state_js.key_value("access")
        await state.refused(
            "state granting itself a role",
            "$kv.access.binding.default.x",
            access_as_state.put("binding.default.x", b"forged"),
        )
        registry_js = registry.client.jetstream(timeout=REFUSED_AFTER_S)
        sweeps_as_registry = await registry_js.key_value("sweeps")
        await registry.refused(
            "registry reading sweeps", "kv_sweeps", sweeps_as_registry.get("sweep-1")
        )
        simulation_js = simulation.client.jetstream(timeout=REFUSED_AFTER_S)
        registry_as_simulation = await simulation_js.key_value("registry")
        await simulation.refused(
            "simulation writing a twin",
            "$kv.registry.twins.pump-1",
            registry_as_simulation.put("twins.pump-1", b"forged"),
        )
        await simulation.refused(
            "simulation deleting a stream",
            "$js.api.stream.delete.telemetry",
            simulation_js.delete_stream("TELEMETRY"),
        )
        # Nothing forged landed.
        assert (await own_registry.get("twins.pump-1")).value == b"twin"
        assert (await own_state.get("pump-1")).value == b"state"
    finally:
        for connection in (registry, ingestion, state, simulation):
            if connection.client is not None:
                await connection.client.close()
