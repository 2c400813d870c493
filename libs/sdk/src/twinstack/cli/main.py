"""``twinstack``: run the platform locally, inspect it, and walk its paths."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from google.protobuf.json_format import MessageToDict
from rich.table import Table
from rich.tree import Tree

from twinstack.api.registry.v1 import registry_pb2
from twinstack.cli.shared import TokenOption, console
from twinstack.cli.shared import fail as _fail
from twinstack.cli.shared import open_client as _client
from twinstack.cli.shared import parse_assignments as _parse_assignments
from twinstack.cli.simulation import sim_app
from twinstack.cli.telemetry import alerts_app, history, ingest, state_app
from twinstack.common.values import to_python
from twinstack.sdk.client import ApiError, Endpoints, Point, TwinstackClient
from twinstack.sdk.examples import EXAMPLE_TWINS, SensorFeeder, ensure_example_twins
from twinstack.sdk.models import ModelFileError, example_model_sources, model_sources

app = typer.Typer(help="twinstack: live digital twins, history, simulation.", no_args_is_help=True)
model_app = typer.Typer(help="Models (twin types) in the registry.", no_args_is_help=True)
twin_app = typer.Typer(help="Twins and their relationships in the registry.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(twin_app, name="twin")
app.add_typer(state_app, name="state")
app.add_typer(alerts_app, name="alerts")
app.command()(ingest)
app.command()(history)
app.add_typer(sim_app, name="sim")


def _model_columns(table: Table) -> None:
    # Model ids are the point of the table: never fold them across lines.
    table.add_column("id", no_wrap=True)
    for column in ("name", "extends", "revision"):
        table.add_column(column)


def _properties_text(twin: registry_pb2.Twin) -> str:
    return ", ".join(f"{k}={to_python(v)}" for k, v in sorted(twin.properties.items()))


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option(help="Where all data and logs live.")] = Path(
        ".local/twinstack"
    ),
    feed: Annotated[bool, typer.Option(help="Create the example twins and feed them.")] = True,
) -> None:
    """Start nats-server, influxd, the four services and Ray locally; Ctrl-C stops them all."""
    # Imported here, as the other heavy imports of single commands are, to keep the start of
    # every other command quick.
    from twinstack.devstack import LocalPlatform

    platform = LocalPlatform(data_dir.resolve())
    with console.status("starting twinstack") as status:
        platform.start(progress=lambda step: status.update(f"starting {step}"))
    table = Table(title="twinstack is up", show_lines=False)
    table.add_column("part")
    table.add_column("endpoint")
    for name, endpoint in platform.endpoints().items():
        table.add_row(name, endpoint)
    console.print(table)
    console.print(f"data and logs: {data_dir.resolve()}")
    feeder: SensorFeeder | None = None
    client = TwinstackClient(
        Endpoints(**{name: service.target for name, service in platform.services.items()})
    )
    try:
        if feed:
            ensure_example_twins(client)
            feeder = SensorFeeder(client)
            feeder.start()
            names = ", ".join(f"{t.twin_id} ({t.use_case})" for t in EXAMPLE_TWINS)
            console.print(f"feeding example twins: {names}")
        console.print("[bold]Ctrl-C[/bold] stops everything.")
        stop = asyncio.Event()

        async def wait_for_signal() -> None:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await stop.wait()

        asyncio.run(wait_for_signal())
    finally:
        # A second Ctrl-C (or the one a wrapper such as `uv run` forwards) must not cut the
        # shutdown short and leave servers running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if feeder is not None:
            feeder.stop()
        client.close()
        with console.status("stopping twinstack"):
            platform.stop()
        console.print("stopped")


@app.command()
def status(token: TokenOption = None) -> None:
    """Health of each service."""
    with _client(token) as client:
        health = client.health()
    table = Table(title="twinstack services")
    table.add_column("service")
    table.add_column("address")
    table.add_column("health")
    for name, address in client.endpoints.items():
        state = health[name]
        color = "green" if state == "SERVING" else "red"
        table.add_row(name, address, f"[{color}]{state}[/{color}]")
    console.print(table)
    if any(state != "SERVING" for state in health.values()):
        raise typer.Exit(1)


@model_app.command("apply")
def model_apply(
    paths: Annotated[list[Path], typer.Argument(help="Model files or folders (YAML/JSON, DTDL)")],
    allow_breaking: Annotated[
        bool, typer.Option(help="Store new versions even if they break compatibility")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Validate only; store nothing")] = False,
    token: TokenOption = None,
) -> None:
    """Validate and store models (all files together, so they may refer to each other)."""
    try:
        sources = model_sources(
            paths,
            on_skip=lambda path, why: console.print(f"[yellow]skipped[/yellow] {path}: {why}"),
        )
    except ModelFileError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    with _client(token) as client:
        try:
            response = client.create_models(
                sources, allow_breaking_changes=allow_breaking, validate_only=dry_run
            )
        except ApiError as error:
            raise _fail(error) from error
    table = Table(title="models (validated only)" if dry_run else "models")
    _model_columns(table)
    for model in response.models:
        table.add_row(model.id, model.display_name, ", ".join(model.extends), str(model.revision))
    console.print(table)
    for note in response.notes:
        console.print(f"[yellow]not mapped[/yellow] {note.path}: {note.message}")


@model_app.command("get")
def model_get(
    model_id: str,
    resolved: Annotated[bool, typer.Option(help="Show it with everything it inherits")] = False,
    token: TokenOption = None,
) -> None:
    """Show a model document."""
    with _client(token) as client:
        try:
            model = client.get_model(model_id)
        except ApiError as error:
            raise _fail(error) from error
    console.print_json(model.resolved_document if resolved else model.document)


@model_app.command("list")
def model_list(
    prefix: Annotated[str, typer.Option(help="Only ids starting with this")] = "",
    latest: Annotated[bool, typer.Option(help="Only the latest version of each")] = False,
    token: TokenOption = None,
) -> None:
    """List models in id order."""
    table = Table(title="models")
    _model_columns(table)
    with _client(token) as client:
        try:
            for model in client.list_models(id_prefix=prefix, latest_only=latest):
                table.add_row(
                    model.id, model.display_name, ", ".join(model.extends), str(model.revision)
                )
        except ApiError as error:
            raise _fail(error) from error
    console.print(table)


@twin_app.command("query")
def twin_query(
    query: Annotated[str, typer.Argument(help="e.g. \"WHERE IS_OF_MODEL('dtmi:x:Pump;1')\"")],
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many")] = 100,
    token: TokenOption = None,
) -> None:
    """Find twins with the query language (docs/models.md)."""
    table = Table(title=query)
    for column in ("id", "model", "revision", "properties"):
        table.add_column(column, justify="right" if column == "revision" else "left")
    with _client(token) as client:
        try:
            for shown, twin in enumerate(client.query_twins(query, page_size=min(limit, 500))):
                if shown == limit:
                    break
                table.add_row(twin.id, twin.model_id, str(twin.revision), _properties_text(twin))
        except ApiError as error:
            raise _fail(error) from error
    console.print(table)


@twin_app.command("graph")
def twin_graph(
    twin_id: str,
    depth: Annotated[int, typer.Option(min=1, max=10, help="Levels to follow")] = 3,
    incoming: Annotated[bool, typer.Option(help="Follow relationships backwards")] = False,
    token: TokenOption = None,
) -> None:
    """Show the twin graph around a twin as a tree (a twin seen before is marked, not
    expanded again, so cycles end)."""
    seen = {twin_id}
    with _client(token) as client:
        try:
            root_twin = client.get_twin(twin_id)
            tree = Tree(f"[bold]{twin_id}[/bold] ({root_twin.model_id})")

            def expand(node: Tree, current: str, level: int) -> None:
                for edge in client.list_relationships(current, incoming=incoming):
                    other = edge.source_id if incoming else edge.target_id
                    label = f"{'<-' if incoming else '->'} {edge.name} {other}"
                    if other in seen:
                        node.add(f"{label} [dim](seen)[/dim]")
                        continue
                    seen.add(other)
                    child = node.add(label)
                    if level < depth:
                        expand(child, other, level + 1)

            expand(tree, twin_id, 1)
        except ApiError as error:
            raise _fail(error) from error
    console.print(tree)


@twin_app.command("relate")
def twin_relate(
    source_id: str,
    name: str,
    target_id: str,
    prop: Annotated[list[str] | None, typer.Option(help="Relationship property NAME=VALUE")] = None,
    token: TokenOption = None,
) -> None:
    """Create a relationship SOURCE -NAME-> TARGET."""
    with _client(token) as client:
        try:
            relationship = client.create_relationship(
                source_id, name, target_id, _parse_assignments(prop or [], "property")
            )
        except ApiError as error:
            raise _fail(error) from error
    console.print_json(data=MessageToDict(relationship))


@twin_app.command("unrelate")
def twin_unrelate(source_id: str, relationship_id: str, token: TokenOption = None) -> None:
    """Delete a relationship of SOURCE by its id."""
    with _client(token) as client:
        try:
            revision = client.delete_relationship(source_id, relationship_id)
        except ApiError as error:
            raise _fail(error) from error
    console.print(f"deleted {source_id}/{relationship_id} (revision {revision})")


@twin_app.command("migrate")
def twin_migrate(
    twin_id: str,
    model: Annotated[str, typer.Option(help="Model id to move to")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Property NAME=VALUE")] = None,
    drop_undeclared: Annotated[
        bool, typer.Option(help="Drop properties the target does not declare")
    ] = False,
    token: TokenOption = None,
) -> None:
    """Move a twin to another model version."""
    with _client(token) as client:
        try:
            twin = client.migrate_twin(
                twin_id,
                model,
                _parse_assignments(set_ or [], "property"),
                drop_undeclared=drop_undeclared,
            )
        except ApiError as error:
            raise _fail(error) from error
    console.print_json(data=MessageToDict(twin))


@twin_app.command("create")
def twin_create(
    twin_id: str,
    model: Annotated[str, typer.Option(help="Model id, e.g. dtmi:acme:Pump;1")],
    prop: Annotated[list[str] | None, typer.Option(help="Property NAME=VALUE")] = None,
    token: TokenOption = None,
) -> None:
    """Create a twin."""
    with _client(token) as client:
        try:
            twin = client.create_twin(twin_id, model, _parse_assignments(prop or [], "property"))
        except ApiError as error:
            raise _fail(error) from error
    console.print_json(data=MessageToDict(twin))


@twin_app.command("get")
def twin_get(twin_id: str, token: TokenOption = None) -> None:
    """Show a twin."""
    with _client(token) as client:
        try:
            twin = client.get_twin(twin_id)
        except ApiError as error:
            raise _fail(error) from error
    console.print_json(data=MessageToDict(twin))


@twin_app.command("patch")
def twin_patch(
    twin_id: str,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Property NAME=VALUE")] = None,
    remove: Annotated[list[str] | None, typer.Option(help="Property NAME to remove")] = None,
    merge: Annotated[
        str | None, typer.Option(help="JSON merge patch over the properties (RFC 7386)")
    ] = None,
    expected_revision: Annotated[
        int, typer.Option(help="Apply only at this revision (0: any)", min=0)
    ] = 0,
    token: TokenOption = None,
) -> None:
    """Patch a twin's properties, optionally only at an expected revision."""
    try:
        merge_patch = json.loads(merge) if merge else None
    except ValueError as error:
        raise typer.BadParameter(f"--merge: {error}") from error
    with _client(token) as client:
        try:
            twin = client.update_twin(
                twin_id,
                _parse_assignments(set_ or [], "property"),
                remove or [],
                expected_revision=expected_revision,
                merge_patch=merge_patch,
            )
        except ApiError as error:
            raise _fail(error) from error
    console.print_json(data=MessageToDict(twin))


@twin_app.command("delete")
def twin_delete(
    twin_id: str,
    expected_revision: Annotated[
        int, typer.Option(help="Delete only at this revision (0: any)", min=0)
    ] = 0,
    token: TokenOption = None,
) -> None:
    """Delete a twin."""
    with _client(token) as client:
        try:
            revision = client.delete_twin(twin_id, expected_revision=expected_revision)
        except ApiError as error:
            raise _fail(error) from error
    console.print(f"deleted {twin_id} (revision {revision})")


@twin_app.command("list")
def twin_list(
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many")] = 100,
    token: TokenOption = None,
) -> None:
    """List twins in id order."""
    table = Table(title="twins")
    for column in ("id", "model", "revision", "properties"):
        table.add_column(column, justify="right" if column == "revision" else "left")
    with _client(token) as client:
        try:
            for shown, twin in enumerate(client.list_twins(page_size=min(limit, 500))):
                if shown == limit:
                    break
                table.add_row(twin.id, twin.model_id, str(twin.revision), _properties_text(twin))
        except ApiError as error:
            raise _fail(error) from error
    console.print(table)


@app.command()
def demo(
    points: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    token: TokenOption = None,
) -> None:
    """Walk the skeleton path: create a twin, ingest, read live state and history, sweep."""
    from twinstack.devstack import wait_until

    twin_id = f"demo-pump-{uuid.uuid4().hex[:8]}"
    steps = Table(title="twinstack skeleton path")
    steps.add_column("step")
    steps.add_column("result")
    now_ns = time.time_ns()
    samples = [
        Point(
            twin_id,
            {"temperature_c": 40.0 + i * 0.1, "load": 0.7},
            now_ns - (points - i) * 10**9,
        )
        for i in range(points)
    ]
    with _client(token) as client:
        try:
            client.create_models(example_model_sources())
            twin = client.create_twin(
                twin_id, "dtmi:twinstack:examples:Pump;1", {"rated_power_kw": 30.0}
            )
            steps.add_row("registry: twin created", f"{twin.id} at revision {twin.revision}")
            response = client.ingest(samples)
            steps.add_row("ingestion: acknowledged", f"{response.accepted_points} points")
            wait_until(
                lambda: _state_has(client, twin_id, samples[-1]),
                timeout_s=30,
                interval_s=0.2,
                what="live state",
            )
            state = client.get_state(twin_id)
            temperature = to_python(state.reported["temperature_c"].value)
            steps.add_row("state: latest value", f"temperature_c = {temperature}")
            wait_until(
                lambda: _stored_points(client, twin_id, samples) == points,
                timeout_s=30,
                interval_s=0.2,
                what="history in InfluxDB",
            )
            steps.add_row("historian: stored in InfluxDB", f"{points} points")
            sweep = client.run_sweep(
                "pump_thermal",
                horizon_s=1800,
                step_s=1.0,
                sampler="lhs",
                ranges={"load": (0.5, 1.0)},
                samples=20_000,
            )
            peak = next(k for k in sweep.kpis if k.name == "peak_temperature_c")
            steps.add_row(
                "simulation: sweep on Ray",
                f"{sweep.scenario_count} scenarios, peak p95 {peak.p95:.1f} °C",
            )
        except ApiError as error:
            console.print(steps)
            raise _fail(error) from error
    console.print(steps)


def _stored_points(client: TwinstackClient, twin_id: str, samples: list[Point]) -> int:
    # A second early: datetimes hold microseconds, the samples' times nanoseconds.
    start = datetime.fromtimestamp(int(str(samples[0].time)) / 1e9 - 1, tz=UTC)
    series = client.query_history(
        [twin_id], ["temperature_c"], start, datetime.now(UTC), max_points_per_series=len(samples)
    )
    return sum(len(s.time_unix_ns) for s in series)


def _state_has(client: TwinstackClient, twin_id: str, last: Point) -> bool:
    try:
        state = client.get_state(twin_id)
    except ApiError:
        return False
    expected = last.fields["temperature_c"]
    reported = state.reported.get("temperature_c")
    return reported is not None and to_python(reported.value) == expected
