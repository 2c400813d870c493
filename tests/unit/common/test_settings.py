from pathlib import Path

import pytest
from pydantic import ValidationError

from twinstack.common.settings import ServiceSettings


def test_settings_come_from_twinstack_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWINSTACK_GRPC_PORT", "6000")
    monkeypatch.setenv("TWINSTACK_NATS_URL", "nats://nats:4222")
    monkeypatch.setenv("TWINSTACK_AUTH_TOKEN", "s3cret")
    settings = ServiceSettings()
    assert settings.grpc_port == 6000
    assert settings.nats_url == "nats://nats:4222"
    assert settings.auth_token is not None
    assert settings.auth_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_settings_are_frozen_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ServiceSettings()
    with pytest.raises(ValidationError):
        settings.grpc_port = 1
    monkeypatch.setenv("TWINSTACK_GRPC_PORT", "70000")
    with pytest.raises(ValidationError):
        ServiceSettings()


def test_tls_needs_both_files() -> None:
    with pytest.raises(ValidationError, match="go together"):
        ServiceSettings(tls_cert_file=Path("cert.pem"))


def test_simulation_reads_the_ray_jobs_api_and_its_token_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from twinstack.simulation.settings import SimulationSettings

    monkeypatch.setenv("TWINSTACK_RAY_JOBS_ADDRESS", "http://head:8265")
    monkeypatch.setenv("TWINSTACK_RAY_AUTH_TOKEN_FILE", "/etc/ray-auth/token")
    settings = SimulationSettings()
    assert settings.ray_jobs_address == "http://head:8265"
    assert str(settings.ray_auth_token_file) == "/etc/ray-auth/token"
