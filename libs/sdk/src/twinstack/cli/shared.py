"""What every CLI command shares: the session's options, the client, input parsing, output
(tables for people, ``--json`` for scripts) and how errors are shown."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console
from typer._click.core import Context
from typer.core import TyperGroup

from twinstack.sdk import ApiError, Client, ConnectConfig, Scalar
from twinstack.sdk.values import to_python

console = Console()

DATA_DIR_VARIABLE = "TWINSTACK_DATA_DIR"
"""The local platform's data directory, read by ``up`` and ``auth token`` (besides what the SDK
reads, the only variable of the CLI's own)."""
errors = Console(stderr=True)


@dataclass
class Session:
    """Options given before the command (``twinstack --json twin get ...``)."""

    json: bool = False
    config: ConnectConfig = field(default_factory=ConnectConfig.from_env)


session = Session()


class UserError(Exception):
    """A mistake in what the user gave (a file, a field name): one line, exit code 2."""


class CliGroup(TyperGroup):
    """The root command: turns failures a user can cause into one line and an exit code
    instead of a traceback."""

    def list_commands(self, ctx: Context) -> list[str]:
        # The order a new user needs them in, not the alphabet.
        return list(self.commands)

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as error:
            show_api_error(error)
            raise typer.Exit(1) from None
        except UserError as error:
            errors.print(f"[red]error[/red]: {error}", highlight=False)
            raise typer.Exit(2) from None
        except OSError as error:
            where = f" {error.filename}" if error.filename else ""
            errors.print(f"[red]error[/red]:{where}: {error.strerror or error}", highlight=False)
            raise typer.Exit(2) from None


def show_api_error(error: ApiError) -> None:
    """The error's code and message on one line, then each violation on its own."""
    reason = f" ({error.reason})" if error.reason and error.reason != error.code.name else ""
    errors.print(f"[red]{error.code.name}[/red]{reason}: {error.message}", highlight=False)
    for violation in error.violations:
        errors.print(f"  {violation.field}: {violation.description}", highlight=False)


def open_client() -> Client:
    """A client with the session's connection settings."""
    return Client(session.config)


def configure(*, json_output: bool, token: str | None, tls: bool, tls_roots: Path | None) -> None:
    """Applies the options given before the command."""
    base = ConnectConfig.from_env()
    session.json = json_output
    session.config = dataclasses.replace(
        base,
        token=token or base.token,
        tls=tls or base.tls,
        root_certificates_file=tls_roots or base.root_certificates_file,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Message):
        return MessageToDict(value, preserving_proto_field_name=True)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def emit(data: Any, human: Callable[[], None]) -> None:
    """Shows a result: ``data`` as JSON with ``--json``, else what ``human`` prints."""
    if session.json:
        sys.stdout.write(json.dumps(_plain(data), indent=2, default=str) + "\n")
    else:
        human()


def values_of(fields: Any) -> dict[str, Any]:
    """A ``map<string, Value>`` as plain Python values."""
    return {name: to_python(value) for name, value in sorted(fields.items())}


def short(value: Any) -> str:
    """A value for a table cell: floats to 4 significant digits, times in UTC."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def parse_scalar(text: str) -> Scalar:
    """``true``/``false``, an integer, a number, or else the text itself."""
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
        if not sep or not name:
            raise typer.BadParameter(f"{what} {item!r} is not NAME=VALUE")
        if raw[:1] in ("{", "["):
            try:
                values[name] = json.loads(raw)
            except ValueError as error:
                raise typer.BadParameter(f"{what} {name}: {error}") from error
        else:
            values[name] = parse_scalar(raw)
    return values
