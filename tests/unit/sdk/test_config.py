"""How the SDK connects: addresses, credentials and the retry policy of read-only calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinstack.sdk import ConnectConfig, Endpoints, RetryPolicy
from twinstack.sdk.config import channel_target


def test_addresses_and_credentials_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TWINSTACK_STATE_ADDR", "state.example:443")
    monkeypatch.setenv("TWINSTACK_AUTH_TOKEN", "s3cret")
    monkeypatch.setenv("TWINSTACK_TLS", "true")
    monkeypatch.setenv("TWINSTACK_TLS_ROOTS", "/etc/ca.pem")
    config = ConnectConfig.from_env()
    assert config.endpoints.state == "state.example:443"
    assert config.endpoints.registry == "127.0.0.1:50051"
    assert config.metadata == (("authorization", "Bearer s3cret"),)
    assert config.tls
    assert config.root_certificates_file == Path("/etc/ca.pem")


def test_only_idempotent_calls_are_retried_and_calls_spread_over_replicas() -> None:
    config = ConnectConfig(retry=RetryPolicy(max_attempts=3))
    service_config = json.loads(config.service_config("registry"))
    assert service_config["loadBalancingConfig"] == [{"round_robin": {}}]
    (method_config,) = service_config["methodConfig"]
    names = {entry["method"] for entry in method_config["name"]}
    assert {"GetTwin", "ListTwins", "QueryTwins", "GetModel", "ListRelationships"} <= names
    assert names.isdisjoint({"CreateTwin", "UpdateTwin", "DeleteTwin", "CreateModels"})
    ingestion = json.loads(config.service_config("ingestion"))["methodConfig"][0]["name"]
    assert {entry["method"] for entry in ingestion} == {"IngestBatch", "ListDevices", "Check"}
    assert method_config["retryPolicy"]["maxAttempts"] == 3
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE", "CANCELLED"]


def test_retries_can_be_turned_off_and_mutual_tls_needs_both_halves(tmp_path: Path) -> None:
    options = dict(ConnectConfig(retry=None).channel_options("state"))
    assert options["grpc.enable_retries"] == 0
    assert "methodConfig" not in json.loads(str(options["grpc.service_config"]))
    certificate = tmp_path / "client.pem"
    certificate.write_text("not used")
    with pytest.raises(ValueError, match="both"):
        ConnectConfig(Endpoints(), client_certificate_file=certificate).credentials()
    assert ConnectConfig().credentials() is None, "plaintext unless asked"


def test_several_replica_addresses_make_one_target() -> None:
    assert channel_target("state.example:443") == "state.example:443"
    assert channel_target("127.0.0.1:1, 127.0.0.2:2") == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert channel_target("[::1]:1,[::1]:2") == "ipv6:[::1]:1,[::1]:2"
    with pytest.raises(ValueError, match="IP addresses only"):
        channel_target("a.example:1,b.example:2")
    with pytest.raises(ValueError, match="not host:port"):
        channel_target("127.0.0.1:1,127.0.0.2")
