"""Per-tenant quotas against real nats-server and influxd: a tenant at a quota gets
RESOURCE_EXHAUSTED with a QuotaFailure for ``tenant:<name>``, nothing of the refused request is
stored or published, and the tenant passes again once it holds or sends less."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest

from twinstack.api.common.v1 import types_pb2
from twinstack.api.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.api.state.v1 import state_pb2, state_pb2_grpc
from twinstack.common.nats import TELEMETRY_STREAM, Backbone
from twinstack.ingestion.app import IngestionApp
from twinstack.ingestion.settings import IngestionSettings
from twinstack.registry.app import RegistryApp
from twinstack.registry.settings import RegistrySettings
from twinstack.state.app import StateApp
from twinstack.state.settings import StateSettings

DEVICE = "dtmi:twinstack:test:Device;1"


def quota_failure(details: list[Any]) -> tuple[str, str]:
    """(subject, description) of the status's QuotaFailure."""
    (failure,) = [d for d in details if d.DESCRIPTOR.name == "QuotaFailure"]
    violation = failure.violations[0]
    return violation.subject, violation.description


def error_info(details: list[Any]) -> dict[str, str]:
    (info,) = [d for d in details if d.DESCRIPTOR.name == "ErrorInfo"]
    assert info.reason == "QUOTA_EXCEEDED"
    return dict(info.metadata)


def device(twin_id: str) -> registry_pb2.CreateTwinRequest:
    return registry_pb2.CreateTwinRequest(twin=registry_pb2.Twin(id=twin_id, model_id=DEVICE))


async def test_a_tenant_holds_at_most_its_twins(
    infra_settings: dict[str, Any], serve_app: Any, store_test_models: Any, details_of: Any
) -> None:
    settings = RegistrySettings(**infra_settings, tenant_max_twins=2)
    async with serve_app(settings, RegistryApp(settings)) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        await store_test_models(registry)
        await registry.CreateTwin(device("q-1"))
        await registry.CreateTwin(device("q-2"))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await registry.CreateTwin(device("q-3"))
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = details_of(raised.value)
        assert quota_failure(details)[0] == "tenant:default"
        assert error_info(details) == {
            "tenant": "default", "quota": "TWINSTACK_TENANT_MAX_TWINS",
            "maximum": "2", "requested": "3",
        }  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as existing:
            await registry.CreateTwin(device("q-2"))
        assert existing.value.code() == grpc.StatusCode.ALREADY_EXISTS, "no quota hides a clash"
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await registry.GetTwin(registry_pb2.GetTwinRequest(twin_id="q-3"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        await registry.DeleteTwin(registry_pb2.DeleteTwinRequest(twin_id="q-1"))
        await registry.CreateTwin(device("q-3"))


def readings(twin_id: str, count: int) -> list[types_pb2.TelemetryPoint]:
    made = []
    for i in range(count):
        point = types_pb2.TelemetryPoint(
            twin_id=twin_id, fields={"temp": types_pb2.Value(double_value=20 + i)}
        )
        point.time.FromNanoseconds(time.time_ns() - 10**9 + i * 10**6)
        made.append(point)
    return made


async def test_a_tenant_sends_at_most_its_rate_and_is_told_when_to_come_back(
    infra_settings: dict[str, Any],
    serve_app: Any,
    store_test_models: Any,
    details_of: Any,
    backbone: Backbone,
) -> None:
    registry_settings = RegistrySettings(**infra_settings)
    # A burst of 10 points, then 1 a second; a request is held at most 0.2 s. The first request
    # leaves a debt of 40 points: 41 s to pay off, far longer than the test takes, so the retry
    # delay told to the caller does not depend on how fast this machine runs the test.
    settings = IngestionSettings(
        **infra_settings,
        tenant_ingest_points_per_s=1,
        tenant_ingest_burst_s=10,
        publish_slot_wait_s=0.2,
        historian_enabled=False,
    )
    async with serve_app(registry_settings, RegistryApp(registry_settings)) as registry_channel:
        registry = registry_pb2_grpc.RegistryServiceStub(registry_channel)
        await store_test_models(registry)
        await registry.CreateTwin(device("rated-1"))
        async with serve_app(settings, IngestionApp(settings)) as channel:
            ingestion = ingestion_pb2_grpc.IngestionServiceStub(channel)
            first = await ingestion.IngestBatch(
                ingestion_pb2.IngestBatchRequest(points=readings("rated-1", 50))
            )
            assert first.accepted_points == 50, "a request larger than the burst passes once"
            published = (await backbone.js.stream_info(TELEMETRY_STREAM)).state.messages

            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await ingestion.IngestBatch(
                    ingestion_pb2.IngestBatchRequest(points=readings("rated-1", 5))
                )
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            details = details_of(raised.value)
            assert quota_failure(details)[0] == "tenant:default"
            assert error_info(details)["quota"] == "TWINSTACK_TENANT_INGEST_POINTS_PER_S"
            (retry,) = [d for d in details if d.DESCRIPTOR.name == "RetryInfo"]
            # The debt's own figure (41 s), less the moments since it was taken.
            assert 30 < retry.retry_delay.ToNanoseconds() / 1e9 <= 41

            async def one_batch() -> ingestion_pb2.IngestStreamResponse:
                async for response in ingestion.IngestStream(
                    iter(
                        [
                            ingestion_pb2.IngestStreamRequest(
                                sequence=7, points=readings("rated-1", 5)
                            )
                        ]
                    )
                ):
                    answer: ingestion_pb2.IngestStreamResponse = response
                    return answer
                raise AssertionError("no answer")

            streamed = await one_batch()
            assert streamed.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            assert 30_000 < streamed.retry_after_ms <= 41_000
            assert (await backbone.js.stream_info(TELEMETRY_STREAM)).state.messages == published


async def test_a_tenant_holds_at_most_its_watches(
    infra_settings: dict[str, Any], serve_app: Any, details_of: Any
) -> None:
    settings = StateSettings(**infra_settings, tenant_max_watches=1, watch_fetch_timeout_s=0.2)
    async with serve_app(settings, StateApp(settings)) as channel:
        state = state_pb2_grpc.StateServiceStub(channel)
        first = state.Watch(state_pb2.WatchRequest(all_twins=True))
        await first.initial_metadata()  # sent once the Watch holds its slot
        second = state.Watch(state_pb2.WatchRequest(all_twins=True), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await second.read()
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = details_of(raised.value)
        assert quota_failure(details)[0] == "tenant:default"
        assert error_info(details)["quota"] == "TWINSTACK_TENANT_MAX_WATCHES"
        first.cancel()
