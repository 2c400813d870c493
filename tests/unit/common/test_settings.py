from pathlib import Path

import pytest
from pydantic import ValidationError

from twinstack.common.settings import ServiceSettings


@pytest.fixture(autouse=True)
def identity_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings need a way to authenticate callers unless auth is disabled."""
    monkeypatch.setenv("TWINSTACK_AUTH_JWKS", "https://idp.example/jwks.json")
    monkeypatch.setenv("TWINSTACK_AUTH_ISSUER", "https://idp.example")


def test_settings_come_from_twinstack_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWINSTACK_GRPC_PORT", "6000")
    monkeypatch.setenv("TWINSTACK_NATS_URL", "nats://nats:4222")
    monkeypatch.setenv("TWINSTACK_INFLUX_PASSWORD", "s3cret")
    monkeypatch.setenv("TWINSTACK_AUTH_CLOCK_SKEW_S", "5")
    settings = ServiceSettings()
    assert settings.grpc_port == 6000
    assert settings.nats_url == "nats://nats:4222"
    assert settings.auth_mode == "required"
    assert settings.auth_clock_skew_s == 5
    assert settings.influx_password is not None
    assert settings.influx_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_a_service_refuses_to_start_with_no_way_to_authenticate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TWINSTACK_AUTH_JWKS")
    with pytest.raises(ValidationError, match="nothing can authenticate a caller"):
        ServiceSettings()
    assert ServiceSettings(auth_mode="disabled").auth_mode == "disabled"
    with pytest.raises(ValidationError, match="not allowed here"):
        ServiceSettings(auth_mode="disabled", auth_allow_disabled=False)
    with pytest.raises(ValidationError, match="needs TWINSTACK_AUTH_ISSUER"):
        ServiceSettings(auth_jwks="/etc/jwks.json", auth_issuer=None)


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
