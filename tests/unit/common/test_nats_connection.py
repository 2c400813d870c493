"""How a service reaches NATS: seed lists, TLS and credentials from its settings; which of its
errors mean "try again"."""

from __future__ import annotations

import ssl
from pathlib import Path

import nats.errors
import nats.js.errors
import pytest
from pydantic import ValidationError

from twinstack.common.nats import NatsConnection, nats_unavailable, retried_at_start
from twinstack.common.settings import ServiceSettings, nats_seeds


def local(**fields: object) -> ServiceSettings:
    """Settings of a local run (no identity provider needed) with ``fields``."""
    return ServiceSettings.model_validate({"auth_mode": "disabled", **fields})


def test_a_cluster_is_given_as_several_seeds() -> None:
    seeds = "nats://nats-0.nats-headless:4222, nats://nats-1.nats-headless:4222,tls://n2:4222"
    assert nats_seeds(seeds) == [
        "nats://nats-0.nats-headless:4222",
        "nats://nats-1.nats-headless:4222",
        "tls://n2:4222",
    ]
    settings = local(nats_url=seeds)
    assert NatsConnection.from_settings(settings).urls == seeds


@pytest.mark.parametrize("bad", ["", " , ", "nats-0:4222", "http://nats:4222", "nats://:4222"])
def test_what_is_not_a_nats_url_is_refused_at_start(bad: str) -> None:
    with pytest.raises(ValidationError, match="TWINSTACK_NATS_URL"):
        local(nats_url=bad)


def test_tls_and_credentials_settings_must_be_whole(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="go together"):
        local(nats_tls_cert_file=tmp_path / "c.pem")
    with pytest.raises(ValidationError, match="set one"):
        local(nats_user="state", nats_credentials_file=tmp_path / "s.creds")


def test_tls_is_used_for_tls_seeds_or_when_a_ca_is_given(tmp_path: Path) -> None:
    assert NatsConnection("nats://a:4222").tls_context() is None
    context = NatsConnection("tls://a:4222").tls_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    missing = NatsConnection("nats://a:4222", tls_ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(FileNotFoundError):
        missing.tls_context()


def test_the_password_is_not_in_the_connections_repr() -> None:
    assert "s3cret" not in repr(NatsConnection("nats://a:4222", "state", "s3cret"))


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (nats.errors.TimeoutError(), True),
        (nats.js.errors.ServiceUnavailableError(), True),
        (
            nats.js.errors.APIError(code=500, err_code=10039, description="raft proposal failed"),
            True,
        ),
        (
            nats.js.errors.APIError(code=409, err_code=10158, description="duplicate in process"),
            True,
        ),
        (
            nats.js.errors.BadRequestError(
                code=400, err_code=10005, description="no suitable peers for placement"
            ),
            True,
        ),
        (nats.js.errors.KeyWrongLastSequenceError("wrong last sequence: 7"), False),
        (nats.js.errors.APIError(code=400, err_code=10054, description="message too large"), False),
        (ValueError("a bug of ours"), False),
    ],
)
def test_a_cluster_in_flux_is_unavailable_and_a_refusal_is_not(
    error: BaseException, unavailable: bool
) -> None:
    assert nats_unavailable(error) is unavailable


async def test_the_start_waits_out_a_cluster_in_flux_but_not_a_refusal() -> None:
    answers: list[BaseException | str] = [
        nats.errors.TimeoutError(),
        nats.js.errors.BadRequestError(
            code=400, err_code=10005, description="no suitable peers for placement, peer offline"
        ),
        nats.js.errors.APIError(code=503, err_code=10008, description="JetStream not ready"),
        "provisioned",
    ]

    async def provision() -> str:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    assert await retried_at_start(provision, "provisioning") == "provisioned"

    async def refused() -> str:
        raise nats.js.errors.BadRequestError(code=400, err_code=10058, description="conflict")

    with pytest.raises(nats.js.errors.BadRequestError):
        await retried_at_start(refused, "provisioning")
