"""Page sizes and opaque page tokens for every List RPC."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from twinstack.api.common.v1 import types_pb2
from twinstack.common.errors import FieldViolation, InvalidArgumentError

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_TOKEN_PREFIX = "after:"


@dataclass(frozen=True)
class Page:
    """Where a page starts (after this key; "" for the first page) and how long it is."""

    after: str
    size: int


def requested_page(request: types_pb2.PageRequest, field: str = "page") -> Page:
    """The page a request asks for; InvalidArgumentError for a bad size or token."""
    if request.page_size < 0:
        raise InvalidArgumentError(
            "invalid page size", [FieldViolation(f"{field}.page_size", "must not be negative")]
        )
    size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    if not request.page_token:
        return Page("", size)
    try:
        decoded = base64.urlsafe_b64decode(request.page_token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if not decoded.startswith(_TOKEN_PREFIX):
        raise InvalidArgumentError(
            "invalid page token",
            [FieldViolation(f"{field}.page_token", "not a token this API returned")],
        )
    return Page(decoded.removeprefix(_TOKEN_PREFIX), size)


def next_page(last_key: str | None) -> types_pb2.PageResponse:
    """The response's page part: a token for the page after ``last_key``, or none."""
    if last_key is None:
        return types_pb2.PageResponse()
    token = base64.urlsafe_b64encode(f"{_TOKEN_PREFIX}{last_key}".encode()).decode()
    return types_pb2.PageResponse(next_page_token=token)
