"""The NATS permission table: each service may write only its own data."""

from twinstack.common.nats_permissions import SERVICES, permissions


def denied_publish(service: str) -> set[str]:
    return set(permissions(service)["publish"]["deny"])


def test_a_service_writes_its_own_data_and_no_one_elses() -> None:
    owners = {
        "$KV.registry.>": "registry",
        "$KV.access.>": "registry",
        "tel.>": "ingestion",
        "$KV.state_twins.>": "state",
        "$KV.alert_rules.>": "state",
        "$KV.sweeps.>": "simulation",
        "$O.sweep_results.>": "simulation",
    }
    for subject, owner in owners.items():
        for service in SERVICES:
            assert (subject in denied_publish(service)) == (service != owner), (subject, service)
    for service in SERVICES:
        assert "evt.audit.>" not in denied_publish(service), "every service audits"
        assert "$JS.API.STREAM.DELETE.>" in denied_publish(service)


def test_reads_are_limited_to_what_a_service_uses() -> None:
    def reads(service: str, stream: str) -> bool:
        return f"$JS.API.CONSUMER.CREATE.{stream}.>" not in denied_publish(service)

    assert all(reads(service, "KV_access") for service in SERVICES), "every gatekeeper"
    assert all(reads(service, "KV_registry") for service in SERVICES), "every model catalog"
    assert reads("state", "TELEMETRY")
    assert reads("ingestion", "TELEMETRY")
    assert not reads("registry", "TELEMETRY")
    assert not reads("ingestion", "KV_state_twins")
    assert reads("simulation", "KV_state_twins"), "snapshots"
    assert not reads("state", "KV_sweeps")
