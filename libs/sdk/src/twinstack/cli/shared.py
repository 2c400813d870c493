"""What every CLI command group shares: the console, the token option, the client, input
parsing and how API errors are shown."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from google.protobuf.json_format import MessageToDict
from rich.console import Console

from twinstack.common.values import Scalar
from twinstack.sdk.client import ApiError, Endpoints, TwinstackClient

console = Console()

TokenOption = Annotated[
    str | None, typer.Option(envvar="TWINSTACK_AUTH_TOKEN", help="Bearer token for the APIs.")
]


def open_client(token: str | None) -> TwinstackClient:
    return TwinstackClient(Endpoints(), token=token)


def parse_scalar(text: str) -> Scalar:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def parse_assignments(items: list[str], what: str) -> dict[str, Any]:
    """NAME=VALUE pairs; a VALUE that starts with { or [ is read as JSON (objects, arrays)."""
    values: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{what} {item!r} is not NAME=VALUE")
        if raw[:1] in ("{", "["):
            try:
                values[name] = json.loads(raw)
            except ValueError as error:
                raise typer.BadParameter(f"{what} {name}: {error}") from error
        else:
            values[name] = parse_scalar(raw)
    return values


def fail(error: ApiError) -> typer.Exit:
    """Prints an API error with its details; the command exits with status 1."""
    console.print(f"[red]{error.code.name}[/red]: {error.message}")
    for detail in error.details:
        console.print(f"  {type(detail).__name__}: {MessageToDict(detail)}")
    return typer.Exit(1)
