"""The state service as the server bootstrap runs it: its dependencies acquired in order
and released in reverse, and its servicer registered."""

from __future__ import annotations

import contextlib

from twinstack.api.state.v1 import state_pb2_grpc
from twinstack.common.app import Registration, ServiceApp, started
from twinstack.common.catalog import ModelCatalog
from twinstack.common.consumer import PullConsumerSettings
from twinstack.common.ids import partition_of
from twinstack.common.kv_watch import scan
from twinstack.common.nats import (
    ALERT_RULES_BUCKET,
    REGISTRY_BUCKET,
    STATE_LEASE_TTL_S,
    STATE_OWNERSHIP_BUCKET,
    STATE_TWINS_BUCKET,
    TELEMETRY_STREAM,
    key_value,
    telemetry_partition_filter,
)
from twinstack.state.alert_index import AlertIndex
from twinstack.state.alerts import AlertEvaluator
from twinstack.state.ownership import FencedError, PartitionOwnership, member_name
from twinstack.state.rules import RuleBook
from twinstack.state.service import SERVICE_NAME, StateServicer
from twinstack.state.settings import StateSettings
from twinstack.state.store import Retirement, StateStore
from twinstack.state.updater import StalePeriods, StateUpdater


class StateApp(ServiceApp[StateSettings]):
    """The state service as the server bootstrap runs it."""

    service_names = (SERVICE_NAME,)

    async def open(self, resources: contextlib.AsyncExitStack) -> Registration:
        settings = self.settings
        backbone = await self.backbone(resources, "twinstack-state")
        bucket = await key_value(backbone.js, STATE_TWINS_BUCKET)
        store = StateStore(bucket, cache_twins=settings.state_cache_twins)
        ownership: PartitionOwnership | None = None

        def held() -> PartitionOwnership:
            if ownership is None:
                raise FencedError("no partition is held before ownership starts")
            return ownership

        def holds(twin_id: str) -> bool | None:
            if ownership is None:
                return None
            return ownership.holds(partition_of(twin_id, settings.telemetry_partitions))

        retirement = Retirement(store, holds)
        resources.push_async_callback(retirement.stop)
        # The graph: for the twins subgraph scopes cover.
        catalog = ModelCatalog(await key_value(backbone.js, REGISTRY_BUCKET), follow_graph=True)
        # Before the catalog starts: twins deleted while this replica was down are retired too.
        catalog.deletion_listeners.append(retirement.retire)
        await started(resources, catalog)
        rules = await started(
            resources,
            RuleBook(
                await key_value(backbone.js, ALERT_RULES_BUCKET),
                catalog,
                max_rules=settings.max_alert_rules,
                tenant_max_rules=settings.tenant_max_alert_rules,
                quotas=self.quota_overrides,
            ),
        )
        alerts = await started(resources, AlertIndex(bucket))
        influx = await self.influx(resources)

        def consumer(partition: int) -> PullConsumerSettings:
            return PullConsumerSettings(
                stream=TELEMETRY_STREAM,
                subject=telemetry_partition_filter(partition),
                durable=f"{settings.state_durable}-p{partition}",
                fetch_messages=settings.state_fetch_messages,
                fetch_timeout_s=settings.state_fetch_timeout_s,
                ack_wait_s=settings.state_ack_wait_s,
                max_deliver=settings.state_max_deliver,
                redelivery_backoff_s=settings.state_redelivery_backoff_s,
            )

        async def known_twins() -> list[str]:
            return [entry.key for entry in await scan(bucket, meta_only=True)]

        updater = StateUpdater(
            backbone.js,
            store,
            AlertEvaluator(rules.rules_for),
            StalePeriods(
                catalog.resolve,
                periods=settings.state_stale_periods,
                default_s=settings.state_default_stale_after_s,
            ),
            consumer,
            settings.telemetry_partitions,
            settings.state_staleness_check_interval_s,
            held,
            known_twins,
        )
        await updater.start()
        resources.push_async_callback(updater.stop)
        ownership_bucket = await key_value(backbone.js, STATE_OWNERSHIP_BUCKET)
        ownership = PartitionOwnership(
            ownership_bucket,
            member_name(settings.state_member),
            settings.telemetry_partitions,
            lease_ttl_s=STATE_LEASE_TTL_S,
            renew_interval_s=settings.state_lease_renew_interval_s,
            on_taken=updater.take,
            on_given=updater.give,
        )
        # Released before the updater stops, so that the other replicas take over at once.
        await ownership.start()
        resources.push_async_callback(ownership.stop)
        retirement.decide()
        servicer = StateServicer(
            settings,
            backbone,
            store,
            catalog,
            rules,
            alerts,
            influx,
            ownership_bucket,
            self.quota_overrides,
        )
        return lambda server: state_pb2_grpc.add_StateServiceServicer_to_server(servicer, server)
