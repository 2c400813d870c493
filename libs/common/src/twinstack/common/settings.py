"""Typed, frozen settings read from the environment.

Every variable starts with ``TWINSTACK_``; names carry their unit (``_s``, ``_bytes``) so a
value can never be read in the wrong one. Services extend :class:`ServiceSettings` with their
own fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Settings every twinstack service shares."""

    model_config = SettingsConfigDict(env_prefix="TWINSTACK_", frozen=True, extra="ignore")

    grpc_host: str = "0.0.0.0"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    grpc_max_message_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    # Applied to unary calls that arrive without a deadline of their own.
    grpc_default_deadline_s: float = Field(default=30.0, gt=0)
    # Time between NOT_SERVING and the start of the drain, so that load balancers and probes
    # stop sending new calls before the server refuses them.
    shutdown_not_serving_delay_s: float = Field(default=0.0, ge=0)
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    # A client connection is asked to go (HTTP/2 GOAWAY) after this long, so that clients
    # spread over replicas that started after them; calls still open get the grace period,
    # then the connection closes (SDK watches and ingest streams resume on another one).
    grpc_max_connection_age_s: float = Field(default=300.0, gt=0)
    grpc_max_connection_age_grace_s: float = Field(default=60.0, ge=0)

    # "required": every call but health (and reflection where opened) needs a principal;
    # "disabled": every caller is an anonymous admin of the default tenant (local runs only).
    auth_mode: Literal["required", "disabled"] = "required"
    # False (production): a configuration that disables authentication is refused at start.
    auth_allow_disabled: bool = True
    # The identity provider's JWKS: a file path or an http(s) URL.
    auth_jwks: str | None = None
    auth_issuer: str | None = None
    auth_audience: str = "twinstack"
    auth_clock_skew_s: float = Field(default=30.0, ge=0, le=600)
    auth_jwks_refresh_interval_s: float = Field(default=300.0, gt=0)
    auth_tenant_claim: str = "tenant"
    auth_groups_claim: str = "groups"
    auth_roles_claim: str = "roles"
    # Reflection lists every method and message: open only where tooling needs it anonymously.
    auth_open_reflection: bool = False
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Mutual TLS: client certificates are required and verified against this CA, and a
    # certificate's name is the caller's service identity.
    tls_client_ca_file: Path | None = None

    # One server, or several seeds of a cluster separated by commas; the client learns the
    # rest of the cluster from whichever seed answers, and fails over between them.
    nats_url: str = "nats://127.0.0.1:4222"
    # The service's own NATS user; its permissions allow only what the service needs.
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    # A decentralised-auth credentials file (JWT and NKey seed), instead of user and password.
    nats_credentials_file: Path | None = None
    # TLS to NATS: the CA that verifies the servers, and a client certificate when the
    # servers verify clients (both or neither).
    nats_tls_ca_file: Path | None = None
    nats_tls_cert_file: Path | None = None
    nats_tls_key_file: Path | None = None
    nats_connect_timeout_s: float = Field(default=5.0, gt=0)
    nats_request_timeout_s: float = Field(default=5.0, gt=0)
    # Replicas of every stream and KV bucket: 1 locally, 3 on a production cluster.
    nats_replicas: int = Field(default=1, ge=1, le=5)
    telemetry_partitions: int = Field(default=8, ge=1, le=1024)
    telemetry_dedup_window_s: float = Field(default=120.0, gt=0)

    influx_url: str = "http://127.0.0.1:8086"
    influx_database: str = "twinstack"
    influx_retention_policy: str = "autogen"
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    influx_token: SecretStr | None = None
    influx_org: str = "-"
    influx_timeout_s: float = Field(default=10.0, gt=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    # Prometheus metrics on http://<metrics_host>:<metrics_port>/metrics (port 0: a free one).
    metrics_enabled: bool = True
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    otel_exporter_otlp_endpoint: str | None = None
    # Metrics also pushed over OTLP (traces always are, given an endpoint). Off where
    # Prometheus scrapes /metrics, so that no metric is collected twice.
    otel_export_metrics: bool = True
    otel_export_timeout_s: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _tls_files_come_in_pairs(self) -> ServiceSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TWINSTACK_TLS_CERT_FILE and TWINSTACK_TLS_KEY_FILE go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("TWINSTACK_TLS_CLIENT_CA_FILE needs the server's own certificate")
        return self

    @model_validator(mode="after")
    def _nats_settings_are_whole(self) -> ServiceSettings:
        nats_seeds(self.nats_url)
        if (self.nats_tls_cert_file is None) != (self.nats_tls_key_file is None):
            raise ValueError(
                "TWINSTACK_NATS_TLS_CERT_FILE and TWINSTACK_NATS_TLS_KEY_FILE go together"
            )
        if self.nats_credentials_file is not None and self.nats_user is not None:
            raise ValueError(
                "TWINSTACK_NATS_CREDENTIALS_FILE and TWINSTACK_NATS_USER are two ways to "
                "authenticate to NATS: set one"
            )
        return self

    @model_validator(mode="after")
    def _callers_can_authenticate(self) -> ServiceSettings:
        if self.auth_mode == "disabled" and not self.auth_allow_disabled:
            raise ValueError(
                "TWINSTACK_AUTH_MODE=disabled is not allowed here (TWINSTACK_AUTH_ALLOW_DISABLED "
                "is false): configure an identity provider (docs/security.md)"
            )
        if self.auth_jwks is not None and not self.auth_issuer:
            raise ValueError("TWINSTACK_AUTH_JWKS needs TWINSTACK_AUTH_ISSUER")
        if self.auth_mode == "required" and not (self.auth_jwks or self.tls_client_ca_file):
            raise ValueError(
                "authentication is required but nothing can authenticate a caller: set "
                "TWINSTACK_AUTH_JWKS and TWINSTACK_AUTH_ISSUER (an OIDC provider's keys), or "
                "TWINSTACK_TLS_CLIENT_CA_FILE (mutual TLS); TWINSTACK_AUTH_MODE=disabled is for "
                "local insecure runs only"
            )
        return self


_NATS_SCHEMES = ("nats://", "tls://", "ws://", "wss://")


def nats_seeds(urls: str) -> list[str]:
    """The server URLs in a comma-separated list of NATS seeds.

    Raises:
        ValueError: The list is empty, or names something that is not a NATS URL.
    """
    seeds = [url.strip() for url in urls.split(",") if url.strip()]
    if not seeds:
        raise ValueError("TWINSTACK_NATS_URL names no server")
    for seed in seeds:
        host = seed.partition("://")[2].rsplit("@", 1)[-1]
        if not seed.startswith(_NATS_SCHEMES) or not host or host.startswith(":"):
            raise ValueError(
                f"TWINSTACK_NATS_URL: {seed!r} is not a NATS URL (nats://host:port, tls://..., "
                "several separated by commas)"
            )
    return seeds


def revealed(value: SecretStr | None) -> str | None:
    """The secret's value, for the one call that needs it (a connection's credentials)."""
    return None if value is None else value.get_secret_value()
