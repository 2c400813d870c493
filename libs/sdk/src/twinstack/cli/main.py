"""``twinstack``: run the platform locally, inspect it, and walk its paths."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from google.protobuf.json_format import MessageToDict
from rich.table import Table
from rich.tree import Tree

from twinstack.api.registry.v1 import registry_pb2
from twinstack.api.simulation.v1 import sweep_pb2
from twinstack.cli.access import auth_app
from twinstack.cli.devices import devices_app
from twinstack.cli.shared import (
    DATA_DIR_VARIABLE,
    CliGroup,
    UserError,
    configure,
    console,
    emit,
    open_client,
    parse_assignments,
    short,
    values_of,
)
from twinstack.cli.simulation import sim_app
from twinstack.cli.telemetry import alerts_app, history, ingest, state_app
from twinstack.sdk import (
    ApiError,
    Client,
    ConnectConfig,
    Endpoints,
    NotFoundError,
    Point,
    sweep_spec,
)
from twinstack.sdk.examples import (
    EXAMPLE_DEVICE_MAPPING,
    EXAMPLE_TWINS,
    SensorFeeder,
    ensure_example_twins,
)
from twinstack.sdk.models import ModelFileError, example_model_sources, model_sources
from twinstack.sdk.values import to_python

_EXAMPLES = """
Examples (against `make up`):

  twinstack status

  twinstack twin get line1-press-3

  twinstack history line1-press-3 --since 10m

  twinstack --json state get line1-press-3
"""

app = typer.Typer(
    cls=CliGroup,
    help="twinstack: live digital twins, their history, what-if simulation and forecasts.",
    epilog=_EXAMPLES,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
model_app = typer.Typer(help="Models (twin types) in the registry.", no_args_is_help=True)
twin_app = typer.Typer(help="Twins and their relationships in the registry.", no_args_is_help=True)

# The sandbox twin of `twinstack demo`: removed when the demo ends, and before it starts if a
# previous demo was interrupted.
DEMO_TWIN_ID = "demo-sandbox-pump"


@app.callback()
def _session(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print results as JSON (for scripts), not tables.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(envvar="TWINSTACK_AUTH_TOKEN", help="Bearer token for the APIs."),
    ] = None,
    tls: Annotated[
        bool, typer.Option(help="Use TLS (also TWINSTACK_TLS=1).", envvar="TWINSTACK_TLS")
    ] = False,
    tls_roots: Annotated[
        Path | None,
        typer.Option(
            envvar="TWINSTACK_TLS_ROOTS", help="PEM file of the roots that verify the services."
        ),
    ] = None,
) -> None:
    """twinstack: live digital twins, their history, what-if simulation and forecasts.

    Service addresses come from TWINSTACK_REGISTRY_ADDR, TWINSTACK_INGESTION_ADDR,
    TWINSTACK_STATE_ADDR and TWINSTACK_SIMULATION_ADDR (default: localhost, ports 50051-50054).
    """
    configure(json_output=json_output, token=token, tls=tls, tls_roots=tls_roots)


@app.command()
def up(
    data_dir: Annotated[
        Path, typer.Option(envvar=DATA_DIR_VARIABLE, help="Where all data and logs live.")
    ] = Path(".local/twinstack"),
    feed: Annotated[bool, typer.Option(help="Create the example twins and feed them.")] = True,
    ha: Annotated[
        bool,
        typer.Option(help="Highly available: 3 NATS nodes (R3) and two replicas of each service."),
    ] = False,
    observe: Annotated[
        bool,
        typer.Option(
            help="Also run Prometheus (port 9090) scraping every service, with the alert rules, "
            "and receive the services' traces (OTLP on port 4317; `twinstack traces` shows them)."
        ),
    ] = False,
) -> None:
    """Run the whole platform locally; Ctrl-C stops it.

    Starts nats-server, influxd, the four services and Ray, then creates the example twins and
    feeds them from simulated sensors. With --ha: a 3-node NATS cluster on ports 4222-4224
    with every stream replicated 3 times, and a second replica of each service on its port +
    10 (50061-50064). With --observe: a Prometheus on http://127.0.0.1:9090 scraping every
    service's metrics and evaluating the platform's alert rules, and a trace receiver on
    127.0.0.1:4317 (`twinstack traces`); docs/operations.md."""
    # Imported here, as the other heavy imports of single commands are, to keep the start of
    # every other command quick.
    try:
        from twinstack.cli.example_devices import ExampleDevices
        from twinstack.devstack import LocalPlatform, PrometheusServer
        from twinstack.devstack.traces import TRACES_FILE, TraceReceiver
    except ImportError as error:
        raise UserError(
            f"`twinstack up` runs the services from the twinstack workspace ({error.name} is "
            "missing): clone the repository and run `make up`"
        ) from None

    receiver: TraceReceiver | None = None
    if observe:
        receiver = TraceReceiver(data_dir.resolve() / TRACES_FILE, port=4317)
        receiver.start()
    platform = LocalPlatform(
        data_dir.resolve(),
        ha=ha,
        device_mapping=yaml.safe_dump(EXAMPLE_DEVICE_MAPPING),
        service_env=(
            {
                "TWINSTACK_OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                # Prometheus scrapes the metrics; only traces are pushed.
                "TWINSTACK_OTEL_EXPORT_METRICS": "false",
            }
            if receiver is not None
            else None
        ),
    )
    prometheus: PrometheusServer | None = None
    with console.status("starting twinstack") as status:
        platform.start(progress=lambda step: status.update(f"starting {step}"))
        if observe:
            status.update("starting prometheus")
            prometheus = PrometheusServer(
                data_dir.resolve() / "prometheus", platform.scrape_targets(), port=9090
            )
            try:
                prometheus.start()
            except BaseException:
                platform.stop()
                if receiver is not None:
                    receiver.stop()
                raise
    table = Table(title="twinstack is up", show_lines=False)
    table.add_column("part")
    table.add_column("endpoint")
    for name, endpoint in platform.endpoints().items():
        table.add_row(name, endpoint)
    for target in platform.scrape_targets():
        table.add_row(f"{target.replica} metrics", f"http://{target.address}/metrics")
    if prometheus is not None:
        table.add_row("prometheus", prometheus.url)
    if receiver is not None:
        table.add_row("traces (OTLP)", f"{receiver.endpoint}: twinstack traces")
    table.add_row("admin token", str(platform.issuer.admin_token_path))
    console.print(table)
    console.print(f"data and logs: {data_dir.resolve()}")
    feeder: SensorFeeder | None = None
    devices: ExampleDevices | None = None
    endpoints = Endpoints(**platform.targets())
    client = Client(ConnectConfig(endpoints, token=platform.admin_token))
    try:
        if feed:
            ensure_example_twins(client)
            feeder = SensorFeeder(client)
            feeder.start()
            devices = ExampleDevices(platform.nats.mqtt_url)
            devices.start()
            names = ", ".join(
                f"{t.twin_id} ({t.use_case}{'' if t.transport == 'grpc' else ', ' + t.transport})"
                for t in EXAMPLE_TWINS
                if t.signal is not None
            )
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
        if devices is not None:
            devices.stop()
        client.close()
        with console.status("stopping twinstack"):
            if prometheus is not None:
                prometheus.stop()
            platform.stop()
            if receiver is not None:
                receiver.stop()
        console.print("stopped")


@app.command()
def traces(
    trace_id: Annotated[
        str | None, typer.Argument(help="A trace id (hex); without it, the latest traces.")
    ] = None,
    data_dir: Annotated[
        Path, typer.Option(envvar=DATA_DIR_VARIABLE, help="The data directory of `twinstack up`.")
    ] = Path(".local/twinstack"),
    last: Annotated[int, typer.Option(min=1, help="How many of the latest traces to list.")] = 20,
) -> None:
    """Traces the services sent to `twinstack up --observe`: the latest, or one as a tree.

    A tree shows the trace's spans and, under `~>`, the traces that link to it: the historian's
    and state's batch spans (each batch links to the publish span of every message in it), with
    the InfluxDB write under the historian's.

    Example: twinstack traces 4bf92f3577b34da6a3ce929d0e0e4736"""
    try:
        from twinstack.devstack.traces import TRACES_FILE, read_spans, trace_tree
    except ImportError as error:
        raise UserError(
            f"`twinstack traces` reads what `twinstack up --observe` received ({error.name} is "
            "missing): run it from the twinstack workspace"
        ) from None
    spans = read_spans(data_dir.resolve() / TRACES_FILE)
    if not spans:
        raise UserError(f"no traces in {data_dir / TRACES_FILE}: run `twinstack up --observe`")
    if trace_id is not None:
        tree = trace_tree(spans, trace_id.lower())
        if not tree.spans:
            raise UserError(f"no trace {trace_id} in {data_dir / TRACES_FILE}")
        console.print("\n".join(tree.lines()), highlight=False, markup=False)
        return
    roots = sorted(
        (s for s in spans if not s.parent_span_id and s.kind == "server"),
        key=lambda s: s.start_ns,
    )[-last:]
    counts: dict[str, int] = {}
    for span in spans:
        counts[span.trace_id] = counts.get(span.trace_id, 0) + 1
    table = Table(title=f"latest {len(roots)} traces of calls")
    for column in ("trace", "started (UTC)", "call", "service", "ms", "spans"):
        table.add_column(column)
    for root in roots:
        started = datetime.fromtimestamp(root.start_ns / 1e9, UTC).strftime("%H:%M:%S.%f")[:-3]
        table.add_row(
            root.trace_id,
            started,
            root.name.rsplit("/", 1)[-1],
            root.service,
            f"{root.duration_ms:.1f}",
            str(counts[root.trace_id]),
        )
    console.print(table)


def _replica_health(config: ConnectConfig) -> dict[str, dict[str, str]]:
    """Service to the health of each of its replicas (each address of its list on its own)."""
    found: dict[str, dict[str, str]] = {}
    for service, addresses in config.endpoints.items():
        found[service] = {}
        for address in (a.strip() for a in addresses.split(",") if a.strip()):
            single = dataclasses.replace(
                config.endpoints, **{name: address for name, _ in config.endpoints.items()}
            )
            with Client(dataclasses.replace(config, endpoints=single, retry=None)) as client:
                found[service][address] = client.health()[service]
    return found


def _follower_state(peer: Any) -> str:
    if peer.offline:
        return "offline"
    return "current" if peer.current else f"lag {peer.lag}"


def _cluster_tables(cluster: Any) -> list[Table]:
    nats = Table(title=f"NATS (connected to {cluster.nats_connected_url})")
    nats.add_column("server")
    for server in cluster.nats_servers:
        nats.add_row(server)
    streams = Table(title="streams")
    for column in ("stream", "replicas", "leader", "followers", "messages"):
        streams.add_column(column, justify="right" if column == "messages" else "left")
    for stream in cluster.streams:
        followers = ", ".join(f"{peer.name} ({_follower_state(peer)})" for peer in stream.peers)
        leader = stream.leader or ("[red]none[/red]" if stream.replicas > 1 else "-")
        streams.add_row(
            stream.name, str(stream.replicas), leader, followers, f"{stream.messages:,}"
        )
    partitions = Table(
        title=f"telemetry partitions (state replicas: {', '.join(cluster.state_members)})"
    )
    partitions.add_column("partition", justify="right")
    partitions.add_column("owner")
    for owner in cluster.partitions:
        partitions.add_row(str(owner.partition), owner.member or "[red]none (moving)[/red]")
    return [nats, streams, partitions]


@app.command()
def status() -> None:
    """Health of each service replica, and for platform admins the cluster: NATS servers, each
    stream's leader and followers, and the owner of each telemetry partition. Exits 1 unless
    every replica is serving."""
    with open_client() as client:
        config = client.config
    health = _replica_health(config)
    cluster: Any = None
    cluster_note = ""
    with open_client() as client:
        try:
            cluster = client.state.cluster_status()
        except ApiError as error:
            cluster_note = f"cluster status not shown: {error}"

    def human() -> None:
        table = Table(title="twinstack services")
        for column in ("service", "address", "health"):
            table.add_column(column)
        for name, replicas in health.items():
            for address, state in replicas.items():
                color = "green" if state == "SERVING" else "red"
                table.add_row(name, address, f"[{color}]{state}[/{color}]")
        console.print(table)
        if cluster is not None:
            for part in _cluster_tables(cluster):
                console.print(part)
        else:
            console.print(cluster_note)

    emit(
        {
            "services": health,
            "cluster": MessageToDict(cluster) if cluster is not None else None,
        },
        human,
    )
    if any(state != "SERVING" for replicas in health.values() for state in replicas.values()):
        raise typer.Exit(1)


@app.command()
def demo(
    points: Annotated[
        int, typer.Option(min=1, max=10_000, help="Samples to ingest into the sandbox twin.")
    ] = 100,
) -> None:
    """Walk every service with a sandbox twin, then remove it.

    Creates the twin, ingests samples, reads its live state and history, runs a sweep on Ray,
    and deletes the twin at the end (also when a step fails)."""
    from twinstack.devstack import wait_until

    steps = Table(title="twinstack demo (sandbox twin " + DEMO_TWIN_ID + ")")
    steps.add_column("step")
    steps.add_column("result")
    now_ns = time.time_ns()
    samples = [
        Point(
            DEMO_TWIN_ID,
            {"temperature_c": 40.0 + i * 0.1, "load": 0.7},
            now_ns - (points - i) * 10**9,
        )
        for i in range(points)
    ]
    with open_client() as client:
        with contextlib.suppress(NotFoundError):
            client.registry.delete_twin(DEMO_TWIN_ID)
        try:
            client.registry.create_models(example_model_sources())
            twin = client.registry.create_twin(
                DEMO_TWIN_ID, "dtmi:twinstack:examples:Pump;1", {"rated_power_kw": 30.0}
            )
            steps.add_row("registry: twin created", f"{twin.id} at revision {twin.revision}")
            response = client.telemetry.ingest(samples)
            steps.add_row("ingestion: acknowledged", f"{response.accepted_points} points")
            wait_until(
                lambda: _state_has(client, DEMO_TWIN_ID, samples[-1]),
                timeout_s=30,
                interval_s=0.2,
                what="live state",
            )
            state = client.state.get_state(DEMO_TWIN_ID)
            temperature = to_python(state.reported["temperature_c"].value)
            steps.add_row("state: latest value", f"temperature_c = {temperature:.1f} °C")
            wait_until(
                lambda: _stored_points(client, DEMO_TWIN_ID, samples) == points,
                timeout_s=30,
                interval_s=0.2,
                what="history in InfluxDB",
            )
            steps.add_row("historian: stored in InfluxDB", f"{points} points")
            sweep = client.sweeps.run(
                sweep_spec(
                    "pump_thermal",
                    horizon_s=1800,
                    step_s=1.0,
                    sampler="lhs",
                    ranges={"load": (0.5, 1.0)},
                    samples=20_000,
                    summaries_only=True,
                ),
                submitter="demo",
            )
            if sweep.state != sweep_pb2.SWEEP_STATE_SUCCEEDED:
                raise UserError(f"the demo sweep {sweep.sweep_id} ended: {sweep.failure_reason}")
            peak = next(k for k in sweep.summary.kpis if k.name == "peak_temperature_c")
            steps.add_row(
                "simulation: sweep as a Ray job",
                f"{sweep.scenarios_total:,} scenarios, peak temperature p95 {peak.p95:.1f} °C",
            )
        finally:
            console.print(steps)
            with contextlib.suppress(ApiError):
                client.registry.delete_twin(DEMO_TWIN_ID)
    console.print(f"sandbox twin {DEMO_TWIN_ID} deleted; its history stays in InfluxDB")


def _stored_points(client: Client, twin_id: str, samples: list[Point]) -> int:
    # A second early: datetimes hold microseconds, the samples' times nanoseconds.
    start = datetime.fromtimestamp(int(str(samples[0].time)) / 1e9 - 1, tz=UTC)
    series = client.state.query_history(
        [twin_id], ["temperature_c"], start, datetime.now(UTC), max_points_per_series=len(samples)
    )
    return sum(len(s.time_unix_ns) for s in series)


def _state_has(client: Client, twin_id: str, last: Point) -> bool:
    try:
        state = client.state.get_state(twin_id)
    except ApiError:
        return False
    expected = last.fields["temperature_c"]
    reported = state.reported.get("temperature_c")
    return reported is not None and to_python(reported.value) == expected


# Models ------------------------------------------------------------------------------------


def _model_rows(models: list[registry_pb2.Model], title: str) -> None:
    def human() -> None:
        table = Table(title=title)
        # Model ids are the point of the table: never fold them across lines.
        table.add_column("id", no_wrap=True)
        for column in ("name", "extends", "revision"):
            table.add_column(column)
        for model in models:
            table.add_row(
                model.id, model.display_name, ", ".join(model.extends), str(model.revision)
            )
        console.print(table)

    emit(
        [
            {"id": m.id, "name": m.display_name, "extends": list(m.extends), "revision": m.revision}
            for m in models
        ],
        human,
    )


def _read_sources(paths: list[Path]) -> list[registry_pb2.ModelSource]:
    try:
        return model_sources(
            paths,
            on_skip=lambda path, why: console.print(f"[yellow]skipped[/yellow] {path}: {why}"),
        )
    except ModelFileError as error:
        raise UserError(str(error)) from None


@model_app.command("apply")
def model_apply(
    paths: Annotated[
        list[Path], typer.Argument(help="Model files or folders (YAML/JSON, native or DTDL).")
    ],
    allow_breaking: Annotated[
        bool, typer.Option(help="Store new versions even if they break compatibility.")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Validate on the registry; store nothing.")] = False,
) -> None:
    """Validate and store models, all files together so they may refer to each other."""
    sources = _read_sources(paths)
    with open_client() as client:
        response = client.registry.create_models(
            sources, allow_breaking_changes=allow_breaking, validate_only=dry_run
        )
    _model_rows(list(response.models), "models (validated only)" if dry_run else "models stored")
    for note in response.notes:
        console.print(f"[yellow]not mapped[/yellow] {note.path}: {note.message}", highlight=False)


@model_app.command("validate")
def model_validate(
    paths: Annotated[
        list[Path], typer.Argument(help="Model files or folders (YAML/JSON, native or DTDL).")
    ],
) -> None:
    """Check models offline, without a registry: syntax, expressions, units, inheritance.

    Models they refer to must be among the files (the registry's stored models are not
    consulted; `model apply --dry-run` checks against them)."""
    from twinstack.modeling.batch import Source, parse_batch, read_batch, resolve_batch
    from twinstack.modeling.dtdl import SchemaBudgetError

    sources = [
        Source(
            s.name, "dtdl" if s.format == registry_pb2.MODEL_FORMAT_DTDL else "native", s.content
        )
        for s in _read_sources(paths)
    ]
    try:
        batch = parse_batch(read_batch(sources))
    except SchemaBudgetError as error:
        raise UserError(str(error)) from None
    resolved, violations = resolve_batch(batch.models)
    violations = batch.violations + violations
    ids = sorted(resolved)

    def human() -> None:
        for model_id in ids:
            console.print(f"[green]valid[/green] {model_id}", highlight=False)
        for path, message in batch.notes:
            console.print(f"[yellow]not mapped[/yellow] {path}: {message}", highlight=False)
        for violation in violations:
            console.print(
                f"[red]invalid[/red] {violation.field}: {violation.description}", highlight=False
            )

    emit(
        {
            "valid": ids,
            "notes": [{"path": p, "message": m} for p, m in batch.notes],
            "violations": [{"field": v.field, "description": v.description} for v in violations],
        },
        human,
    )
    if violations:
        raise typer.Exit(1)


@model_app.command("get")
def model_get(
    model_id: Annotated[str, typer.Argument(help="The model's DTMI, e.g. 'dtmi:acme:Pump;1'.")],
    resolved: Annotated[bool, typer.Option(help="Show it with everything it inherits.")] = False,
) -> None:
    """Show a model document (always JSON)."""
    with open_client() as client:
        model = client.registry.get_model(model_id)
    console.print_json(model.resolved_document if resolved else model.document)


@model_app.command("list")
def model_list(
    prefix: Annotated[str, typer.Option(help="Only ids starting with this.")] = "",
    latest: Annotated[bool, typer.Option(help="Only the latest version of each.")] = False,
) -> None:
    """List models in id order."""
    with open_client() as client:
        models = list(client.registry.list_models(id_prefix=prefix, latest_only=latest))
    _model_rows(models, "models")


# Twins -------------------------------------------------------------------------------------


def _twin_data(twin: registry_pb2.Twin) -> dict[str, Any]:
    return {
        "id": twin.id,
        "model_id": twin.model_id,
        "revision": twin.revision,
        "properties": values_of(twin.properties),
        "create_time": twin.create_time.ToJsonString() if twin.HasField("create_time") else None,
        "update_time": twin.update_time.ToJsonString() if twin.HasField("update_time") else None,
    }


def _show_twin(twin: registry_pb2.Twin, title: str) -> None:
    def human() -> None:
        table = Table(
            title=f"{title}: {twin.id} ({twin.model_id}), revision {twin.revision}",
            title_justify="left",
        )
        table.add_column("property")
        table.add_column("value")
        for name, value in values_of(twin.properties).items():
            table.add_row(name, short(value))
        console.print(table)

    emit(_twin_data(twin), human)


def _show_twins(twins: list[registry_pb2.Twin], title: str) -> None:
    def human() -> None:
        table = Table(title=title)
        for column in ("id", "model", "revision", "properties"):
            table.add_column(column, justify="right" if column == "revision" else "left")
        for twin in twins:
            properties = ", ".join(f"{k}={short(v)}" for k, v in values_of(twin.properties).items())
            table.add_row(twin.id, twin.model_id, str(twin.revision), properties)
        console.print(table)

    emit([_twin_data(t) for t in twins], human)


def _first(items: Any, limit: int) -> list[Any]:
    found: list[Any] = []
    for item in items:
        if len(found) == limit:
            break
        found.append(item)
    return found


@twin_app.command("list")
def twin_list(
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 100,
) -> None:
    """List twins in id order."""
    with open_client() as client:
        twins = _first(client.registry.list_twins(page_size=min(limit, 500)), limit)
    _show_twins(twins, "twins")


@twin_app.command("get")
def twin_get(twin_id: Annotated[str, typer.Argument(help="The twin's id.")]) -> None:
    """Show a twin: model, revision and properties."""
    with open_client() as client:
        twin = client.registry.get_twin(twin_id)
    _show_twin(twin, "twin")


@twin_app.command("query")
def twin_query(
    query: Annotated[
        str,
        typer.Argument(
            help="A query (docs/models.md), e.g. \"WHERE IS_OF_MODEL('dtmi:x:Pump;1')\"."
        ),
    ],
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 100,
) -> None:
    """Find twins with the query language (docs/models.md)."""
    with open_client() as client:
        twins = _first(client.registry.query_twins(query, page_size=min(limit, 500)), limit)
    _show_twins(twins, query)


@twin_app.command("graph")
def twin_graph(
    twin_id: Annotated[str, typer.Argument(help="The twin at the root.")],
    depth: Annotated[int, typer.Option(min=1, max=10, help="Levels to follow.")] = 3,
    incoming: Annotated[bool, typer.Option(help="Follow relationships backwards.")] = False,
) -> None:
    """Show the twin graph around a twin as a tree.

    A twin seen before is marked, not expanded again, so cycles end."""
    seen = {twin_id}
    edges: list[dict[str, Any]] = []
    with open_client() as client:
        root_twin = client.registry.get_twin(twin_id)
        tree = Tree(f"[bold]{twin_id}[/bold] ({root_twin.model_id})")
        # (node, twin, level): walked with a stack, depth first, in the order listed.
        stack: list[tuple[Tree, str, int]] = [(tree, twin_id, 1)]
        while stack:
            node, current, level = stack.pop()
            children = []
            for edge in client.registry.list_relationships(current, incoming=incoming):
                other = edge.source_id if incoming else edge.target_id
                edges.append(
                    {"source": edge.source_id, "name": edge.name, "target": edge.target_id}
                )
                label = f"{'<-' if incoming else '->'} {edge.name} {other}"
                if other in seen:
                    node.add(f"{label} [dim](seen)[/dim]")
                    continue
                seen.add(other)
                child = node.add(label)
                if level < depth:
                    children.append((child, other, level + 1))
            stack.extend(reversed(children))
    emit({"root": twin_id, "relationships": edges}, lambda: console.print(tree))


@twin_app.command("create")
def twin_create(
    twin_id: Annotated[str, typer.Argument(help="The new twin's id.")],
    model: Annotated[str, typer.Option(help="Model id, e.g. 'dtmi:acme:Pump;1'.")],
    prop: Annotated[
        list[str] | None, typer.Option(help="Property NAME=VALUE (repeatable; JSON for objects).")
    ] = None,
) -> None:
    """Create a twin of a model."""
    with open_client() as client:
        twin = client.registry.create_twin(
            twin_id, model, parse_assignments(prop or [], "property")
        )
    _show_twin(twin, "created")


@twin_app.command("patch")
def twin_patch(
    twin_id: Annotated[str, typer.Argument(help="The twin.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Property NAME=VALUE (repeatable).")
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option(help="Property NAME to remove (repeatable).")
    ] = None,
    merge: Annotated[
        str | None, typer.Option(help="JSON merge patch over the properties (RFC 7386).")
    ] = None,
    expected_revision: Annotated[
        int, typer.Option(help="Apply only at this revision (0: any).", min=0)
    ] = 0,
) -> None:
    """Patch a twin's properties, optionally only at an expected revision."""
    try:
        merge_patch = json.loads(merge) if merge else None
    except ValueError as error:
        raise typer.BadParameter(f"--merge: {error}") from error
    with open_client() as client:
        twin = client.registry.update_twin(
            twin_id,
            parse_assignments(set_ or [], "property"),
            remove or [],
            expected_revision=expected_revision,
            merge_patch=merge_patch,
        )
    _show_twin(twin, "patched")


@twin_app.command("migrate")
def twin_migrate(
    twin_id: Annotated[str, typer.Argument(help="The twin.")],
    model: Annotated[str, typer.Option(help="Model id to move to.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Property NAME=VALUE (repeatable).")
    ] = None,
    drop_undeclared: Annotated[
        bool, typer.Option(help="Drop properties the target model does not declare.")
    ] = False,
) -> None:
    """Move a twin to another model (version)."""
    with open_client() as client:
        twin = client.registry.migrate_twin(
            twin_id,
            model,
            parse_assignments(set_ or [], "property"),
            drop_undeclared=drop_undeclared,
        )
    _show_twin(twin, "migrated")


@twin_app.command("relate")
def twin_relate(
    source_id: Annotated[str, typer.Argument(help="The twin the relationship starts at.")],
    name: Annotated[str, typer.Argument(help="The relationship's name in the source's model.")],
    target_id: Annotated[str, typer.Argument(help="The twin it points to.")],
    prop: Annotated[
        list[str] | None, typer.Option(help="Relationship property NAME=VALUE (repeatable).")
    ] = None,
) -> None:
    """Create a relationship SOURCE -NAME-> TARGET."""
    with open_client() as client:
        relationship = client.registry.create_relationship(
            source_id, name, target_id, parse_assignments(prop or [], "property")
        )
    emit(
        MessageToDict(relationship, preserving_proto_field_name=True),
        lambda: console.print(
            f"{relationship.source_id} -{relationship.name}-> {relationship.target_id} "
            f"(id {relationship.id}, revision {relationship.revision})",
            highlight=False,
        ),
    )


@twin_app.command("unrelate")
def twin_unrelate(
    source_id: Annotated[str, typer.Argument(help="The twin the relationship starts at.")],
    relationship_id: Annotated[str, typer.Argument(help="The relationship's id.")],
) -> None:
    """Delete a relationship of SOURCE by its id."""
    with open_client() as client:
        revision = client.registry.delete_relationship(source_id, relationship_id)
    emit(
        {"deleted": f"{source_id}/{relationship_id}", "revision": revision},
        lambda: console.print(f"deleted {source_id}/{relationship_id} (revision {revision})"),
    )


@twin_app.command("delete")
def twin_delete(
    twin_id: Annotated[str, typer.Argument(help="The twin (it must have no relationships).")],
    expected_revision: Annotated[
        int, typer.Option(help="Delete only at this revision (0: any).", min=0)
    ] = 0,
) -> None:
    """Delete a twin."""
    with open_client() as client:
        revision = client.registry.delete_twin(twin_id, expected_revision=expected_revision)
    emit(
        {"deleted": twin_id, "revision": revision},
        lambda: console.print(f"deleted {twin_id} (revision {revision})"),
    )


# The order `twinstack --help` lists them in: run it, look around, then each area.
app.command()(ingest)
app.add_typer(model_app, name="model")
app.add_typer(twin_app, name="twin")
app.add_typer(state_app, name="state")
app.command()(history)
app.add_typer(alerts_app, name="alerts")
app.add_typer(sim_app, name="sim")
app.add_typer(devices_app, name="devices")
app.add_typer(auth_app, name="auth")


def run() -> None:
    """The ``twinstack`` entry point."""
    app(prog_name="twinstack")
