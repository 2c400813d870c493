"""State settings (``TWINSTACK_*``)."""

from pydantic import Field

from twinstack.common.settings import ServiceSettings


class StateSettings(ServiceSettings):
    grpc_port: int = Field(default=50053, ge=0, le=65535)
    # Prefix of the durable consumers, one per partition: <prefix>-p<partition>.
    state_durable: str = "state"
    # This replica's name among the state replicas (the host name and process id when empty);
    # the telemetry partitions are shared among the live replicas by leases (docs/architecture.md).
    state_member: str = ""
    # Time between lease renewals; a lease lives STATE_LEASE_TTL_S (10 s) unless renewed.
    state_lease_renew_interval_s: float = Field(default=1.0, gt=0, le=3.0)
    state_fetch_messages: int = Field(default=256, gt=0)
    state_fetch_timeout_s: float = Field(default=0.5, gt=0)
    state_ack_wait_s: float = Field(default=30.0, gt=0)
    # Deliveries of a message whose state update keeps failing before it becomes a dead letter
    # (evt.state.deadletter.<twin>); failures of NATS itself are retried without limit.
    state_max_deliver: int = Field(default=5, ge=1)
    state_redelivery_backoff_s: float = Field(default=1.0, gt=0)
    # State documents kept in memory, so that an update costs a write without a read.
    state_cache_twins: int = Field(default=100_000, ge=0)
    # A twin is stale after this many of its model's longest sample period without telemetry,
    # or after state_default_stale_after_s when its model declares no sample period.
    state_stale_periods: float = Field(default=3.0, gt=0)
    state_default_stale_after_s: float = Field(default=60.0, gt=0)
    state_staleness_check_interval_s: float = Field(default=5.0, gt=0)
    # Longest wait of one fetch of a Watch; a watch itself ends only when the caller leaves.
    watch_fetch_timeout_s: float = Field(default=5.0, gt=0)
    watch_fetch_messages: int = Field(default=256, gt=0)
    # Watches open at once (each holds an ephemeral JetStream consumer), per caller (its
    # principal; the network peer when anonymous) and on this replica.
    max_watches_per_caller: int = Field(default=64, gt=0)
    max_watches: int = Field(default=1024, gt=0)
    # Watches one tenant may hold open on this replica (docs/limits.md#tenant-quotas).
    tenant_max_watches: int = Field(default=512, gt=0)
    # Alert rules in all: each telemetry message is checked against its twin's and model's.
    max_alert_rules: int = Field(default=10_000, gt=0)
    # Alert rules one tenant may store (docs/limits.md#tenant-quotas).
    tenant_max_alert_rules: int = Field(default=2_000, gt=0)
    # Values (twins x fields x points per series) one QueryHistory may read (docs/limits.md).
    history_max_values: int = Field(default=2_000_000, gt=0)
