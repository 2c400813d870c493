"""The twinstack Python SDK: clients of the registry, ingestion, state, simulation and sweep APIs.

>>> from twinstack.sdk import Client, Point
>>> with Client() as client:
...     client.telemetry.ingest([Point("line1-press-3", {"temperature_c": 61.5})])
...     client.state.get_state("line1-press-3")

:class:`AsyncClient` has the same methods for asyncio. Every failed call raises an
:class:`ApiError` subclass named after the reason the service gave.
"""

from twinstack.sdk._sweeps import sweep_spec
from twinstack.sdk.client import AsyncClient, Client
from twinstack.sdk.config import ConnectConfig, Endpoints, RetryPolicy
from twinstack.sdk.errors import (
    AlreadyExistsError,
    ApiError,
    CallCancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    ResourceExhaustedError,
    RevisionMismatchError,
    UnauthenticatedError,
    UnavailableError,
    Violation,
)
from twinstack.sdk.points import Point, make_frame
from twinstack.sdk.values import Scalar

__all__ = [
    "AlreadyExistsError",
    "ApiError",
    "AsyncClient",
    "CallCancelledError",
    "Client",
    "ConnectConfig",
    "DeadlineExceededError",
    "Endpoints",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "LimitExceededError",
    "NotFoundError",
    "PermissionDeniedError",
    "Point",
    "QuotaExceededError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "RevisionMismatchError",
    "Scalar",
    "UnauthenticatedError",
    "UnavailableError",
    "Violation",
    "make_frame",
    "sweep_spec",
]
