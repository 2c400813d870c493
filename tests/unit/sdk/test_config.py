"""How the SDK connects: addresses, credentials and the retry policy of read-only calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinstack.sdk import ConnectConfig, Endpoints, RetryPolicy


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


def test_only_read_only_calls_are_retried() -> None:
    service_config = json.loads(RetryPolicy(max_attempts=3).service_config("registry"))
    (method_config,) = service_config["methodConfig"]
    names = {entry["method"] for entry in method_config["name"]}
    assert {"GetTwin", "ListTwins", "QueryTwins", "GetModel", "ListRelationships"} <= names
    assert names.isdisjoint({"CreateTwin", "UpdateTwin", "DeleteTwin", "CreateModels"})
    assert method_config["retryPolicy"]["maxAttempts"] == 3
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


def test_retries_can_be_turned_off_and_mutual_tls_needs_both_halves(tmp_path: Path) -> None:
    options = dict(ConnectConfig(retry=None).channel_options("state"))
    assert options["grpc.enable_retries"] == 0
    assert "grpc.service_config" not in options
    certificate = tmp_path / "client.pem"
    certificate.write_text("not used")
    with pytest.raises(ValueError, match="both"):
        ConnectConfig(Endpoints(), client_certificate_file=certificate).credentials()
    assert ConnectConfig().credentials() is None, "plaintext unless asked"
