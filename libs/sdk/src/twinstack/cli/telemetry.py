"""CLI commands of the monitoring half: ingest (a sample, a CSV file, a simulated feed), live
state (get, watch, desired values), history (table, terminal chart, PNG) and alerts."""

from __future__ import annotations

import contextlib
import csv
import json
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from twinstack.api.common.v1 import events_pb2
from twinstack.api.ingestion.v1 import ingestion_pb2
from twinstack.api.state.v1 import state_pb2
from twinstack.cli.shared import (
    UserError,
    console,
    emit,
    open_client,
    parse_assignments,
    parse_scalar,
    session,
    short,
    values_of,
)
from twinstack.sdk import ApiError, Client, Point, make_frame
from twinstack.sdk.examples import SensorFeeder
from twinstack.sdk.values import to_python

state_app = typer.Typer(
    help="Live twin state: reported, desired, delta, connectivity.", no_args_is_help=True
)
alerts_app = typer.Typer(help="Alert rules and the alerts they raise.", no_args_is_help=True)

_SPARKS = "▁▂▃▄▅▆▇█"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration_s(text: str) -> float:
    """Seconds in ``30s``, ``15m``, ``2h``, ``7d`` (or a plain number of seconds)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        try:
            return float(text)
        except ValueError:
            raise typer.BadParameter(
                f"{text!r} is not a duration like 90s, 15m, 2h or 7d"
            ) from None
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_time_ns(text: str) -> int:
    """Nanoseconds since the epoch of an integer (nanoseconds) or an RFC 3339 / ISO 8601 time
    (``2026-12-01T10:00:00Z``, ``2026-12-01 10:00:00.5+01:00``; no offset means UTC).

    Raises:
        ValueError: It is neither.
    """
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000


_CsvRow = tuple[int, dict[str, str]]  # (line number, cells)


def csv_batches(
    path: Path, batch_rows: int
) -> Iterator[tuple[ingestion_pb2.IngestStreamRequest, int]]:
    """Stream requests of up to ``batch_rows`` rows of a CSV file, as frames per twin.

    The format is in docs/telemetry.md ("CSV files"): a header with ``twin_id``, ``time``
    (RFC 3339 or integer nanoseconds), then one column per field; an empty cell means the row
    has no value for that field.

    Raises:
        UserError: The header or a row is malformed; the message names the line.
    """
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"twin_id", "time"} <= set(reader.fieldnames):
            raise UserError(f"{path}:1: the CSV header needs twin_id and time columns")
        chunk: list[_CsvRow] = []
        for row in reader:
            chunk.append((reader.line_num, row))
            if len(chunk) == batch_rows:
                yield _frames_request(path, chunk), len(chunk)
                chunk = []
        if chunk:
            yield _frames_request(path, chunk), len(chunk)


def _frames_request(path: Path, rows: list[_CsvRow]) -> ingestion_pb2.IngestStreamRequest:
    groups: dict[tuple[str, tuple[str, ...]], list[_CsvRow]] = defaultdict(list)
    for line, row in rows:
        if None in row or None in row.values():
            raise UserError(f"{path}:{line}: the row has another number of cells than the header")
        if not row["twin_id"]:
            raise UserError(f"{path}:{line}: twin_id is empty")
        fields = tuple(k for k, v in row.items() if k not in ("twin_id", "time") and v != "")
        groups[(row["twin_id"], fields)].append((line, row))
    request = ingestion_pb2.IngestStreamRequest()
    for (twin_id, fields), members in groups.items():
        times = []
        for line, row in members:
            try:
                times.append(parse_time_ns(row["time"]))
            except ValueError:
                raise UserError(
                    f"{path}:{line}: time {row['time']!r} is neither RFC 3339 "
                    "(2026-12-01T10:00:00Z) nor integer nanoseconds"
                ) from None
        columns = {name: [parse_scalar(r[name]) for _, r in members] for name in fields}
        request.frames.append(make_frame(twin_id, times, columns))
    return request


def ingest_csv(client: Client, path: Path, batch_rows: int) -> tuple[int, list[str]]:
    """Streams a CSV file in; returns the rows made durable and the rejections.

    Raises:
        UserError: A row is malformed; the rows before it were sent (and are counted).
    """
    with path.open(encoding="utf-8-sig") as handle:
        total_rows = max(0, sum(1 for _ in handle) - 1)
    sizes: list[int] = []
    rejected: list[str] = []
    malformed: list[UserError] = []
    durable = 0

    def requests() -> Iterator[ingestion_pb2.IngestStreamRequest]:
        # gRPC reads this on its own thread: a malformed row ends the stream cleanly and is
        # reported once what was sent is acknowledged.
        try:
            for request, rows in csv_batches(path, batch_rows):
                sizes.append(rows)
                yield request
        except UserError as error:
            malformed.append(error)

    with Progress(
        TextColumn("[bold]ingest[/bold] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} rows"),
        TimeElapsedColumn(),
        console=console,
        disable=session.json,
    ) as progress:
        task = progress.add_task(path.name, total=total_rows)
        for ack in client.telemetry.ingest_stream(requests()):
            rows = sizes[ack.sequence - 1]
            if ack.code == 0:
                durable += rows
            else:
                first = ack.violations[0] if ack.violations else None
                where = f" ({first.field}: {first.description})" if first else ""
                rejected.append(f"batch {ack.sequence}: {ack.message}{where}")
            progress.advance(task, rows)
    if malformed:
        raise UserError(f"{malformed[0]} ({durable:,} row(s) before it are durable)")
    return durable, rejected


def feed(client: Client, seconds: float, period_s: float) -> int:
    """Plays the simulated sensors of the example twins for ``seconds``."""
    feeder = SensorFeeder(client, period_s=period_s)
    feeder.start()
    try:
        with Progress(
            TextColumn("[bold]feeding[/bold] example twins"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=session.json,
        ) as progress:
            task = progress.add_task("feed", total=seconds)
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < seconds:
                progress.update(task, completed=elapsed)
                time.sleep(0.2)
            progress.update(task, completed=seconds)
    finally:
        feeder.stop()
    if feeder.last_error:
        raise UserError(f"the feed failed: {feeder.last_error}")
    return feeder.sent_points


def _connectivity(state: state_pb2.TwinState) -> str:
    return state_pb2.Connectivity.Name(state.connectivity).removeprefix("CONNECTIVITY_").lower()


def state_data(state: state_pb2.TwinState) -> dict[str, Any]:
    """A live state as plain data (what ``--json`` prints)."""
    return {
        "twin_id": state.twin_id,
        "model_id": state.model_id,
        "revision": state.revision,
        "connectivity": _connectivity(state),
        "reported": {
            name: {"value": to_python(field.value), "time": field.time.ToJsonString()}
            for name, field in sorted(state.reported.items())
        },
        "desired": {
            name: {"value": to_python(field.value), "time": field.time.ToJsonString()}
            for name, field in sorted(state.desired.items())
        },
        "delta": values_of(state.delta),
        "alerts": [
            MessageToDict(alert, preserving_proto_field_name=True)
            for alert in state.alerts.values()
            if alert.active
        ],
    }


def state_table(states: list[state_pb2.TwinState], title: str) -> Table:
    """Twins as rows: connectivity, fields, delta, active alerts, revision."""
    table = Table(title=title, title_justify="left")
    for column in ("twin", "connectivity", "reported", "delta", "alerts", "revision"):
        table.add_column(column, justify="right" if column == "revision" else "left")
    for state in sorted(states, key=lambda s: s.twin_id):
        reported = ", ".join(
            f"{name}={short(to_python(state.reported[name].value))}"
            for name in sorted(state.reported)
        )
        delta = ", ".join(f"{n}→{short(to_python(v))}" for n, v in sorted(state.delta.items()))
        active = [a for a in state.alerts.values() if a.active]
        alerts = ", ".join(f"[red]{a.rule_id}[/red]" for a in active)
        connectivity = _connectivity(state)
        colour = "green" if connectivity == "online" else "yellow"
        table.add_row(
            state.twin_id,
            f"[{colour}]{connectivity}[/{colour}]",
            reported,
            delta,
            alerts,
            str(state.revision),
        )
    return table


def _field_table(state: state_pb2.TwinState, units: dict[str, str] | None = None) -> Table:
    """One twin's fields as rows: reported value, unit and time, desired value, delta."""
    active = ", ".join(a.rule_id for a in state.alerts.values() if a.active) or "none"
    table = Table(
        title=f"{state.twin_id} ({state.model_id}): {_connectivity(state)}, "
        f"revision {state.revision}, active alerts: {active}",
        title_justify="left",
    )
    for column in ("field", "reported", "unit", "measured at (UTC)", "desired", "delta"):
        table.add_column(column, justify="left" if column in ("field", "unit") else "right")
    for name in sorted(set(state.reported) | set(state.desired)):
        reported = state.reported.get(name)
        desired = state.desired.get(name)
        delta = state.delta.get(name)
        table.add_row(
            name,
            "" if reported is None else short(to_python(reported.value)),
            (units or {}).get(name, ""),
            "" if reported is None else short(reported.time.ToDatetime(tzinfo=UTC)),
            "" if desired is None else short(to_python(desired.value)),
            "" if delta is None else short(to_python(delta)),
        )
    return table


def watch_live(
    client: Client, twin_ids: list[str], model_id: str, all_twins: bool, seconds: float | None
) -> int:
    """A table that redraws on every change; returns the number of changes seen."""
    states: dict[str, state_pb2.TwinState] = {}
    changes = 0
    title = "watching " + (model_id or ", ".join(twin_ids) or "every twin")
    with Live(state_table([], title), refresh_per_second=8, console=console) as live:
        for response in client.state.watch(
            twin_ids, model_id=model_id, all_twins=all_twins, timeout_s=seconds
        ):
            if not response.HasField("state"):
                continue
            states[response.state.twin_id] = response.state
            changes += 1
            live.update(state_table(list(states.values()), f"{title} — {changes} change(s)"))
    return changes


def watch_lines(
    client: Client, twin_ids: list[str], model_id: str, all_twins: bool, seconds: float | None
) -> int:
    """One line per change (JSON with ``--json``), for pipes and logs; returns the count."""
    changes = 0
    for response in client.state.watch(
        twin_ids, model_id=model_id, all_twins=all_twins, timeout_s=seconds
    ):
        if not response.HasField("state"):
            continue
        changes += 1
        state = response.state
        if session.json:
            print(json.dumps(state_data(state), default=str), flush=True)
        else:
            reported = " ".join(
                f"{n}={short(to_python(f.value))}" for n, f in sorted(state.reported.items())
            )
            stamp = datetime.now(UTC).strftime("%H:%M:%S")
            print(f"{stamp} {state.twin_id} rev={state.revision} {reported}", flush=True)
    return changes


def sparkline(values: list[float], width: int) -> str:
    """The values as a row of block characters, bucketed to ``width`` by mean."""
    if not values:
        return ""
    # Fewer values than columns: one column each (bucketing to ``width`` left buckets empty).
    columns = min(width, len(values))
    buckets = [
        values[i * len(values) // columns : (i + 1) * len(values) // columns]
        for i in range(columns)
    ]
    means = [sum(b) / len(b) for b in buckets]
    low, high = min(means), max(means)
    span = (high - low) or 1.0
    return "".join(_SPARKS[int((m - low) / span * (len(_SPARKS) - 1))] for m in means)


def series_values(series: state_pb2.HistorySeries) -> list[Any]:
    kind = series.WhichOneof("values")
    return list(getattr(series, kind).values) if kind else []


def model_telemetry(client: Client, twin_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Telemetry field → its declaration (``unit``, ``schema``...) in the twins' models."""
    fields: dict[str, dict[str, Any]] = {}
    model_ids = {client.registry.get_twin(twin_id).model_id for twin_id in twin_ids}
    for model_id in sorted(model_ids):
        document = json.loads(client.registry.get_model(model_id).resolved_document)
        fields.update(document.get("telemetry", {}))
    return fields


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def save_png(
    series: list[state_pb2.HistorySeries], path: Path, title: str, units: dict[str, str]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fields = sorted({s.field for s in series})
    figure, axes = plt.subplots(
        max(1, len(fields)), 1, figsize=(10, 2.6 * max(1, len(fields))), sharex=True, squeeze=False
    )
    for axis, name in zip(axes[:, 0], fields, strict=False):
        for item in (s for s in series if s.field == name):
            times = [datetime.fromtimestamp(t / 1e9, tz=UTC) for t in item.time_unix_ns]
            values = [float(v) for v in series_values(item)]
            axis.plot(times, values, label=item.twin_id, linewidth=1)
        axis.set_ylabel(f"{name} ({units[name]})" if units.get(name) else name)
        axis.grid(alpha=0.3)
        axis.legend(loc="upper left", fontsize="small")
    axes[-1, 0].set_xlabel("time (UTC)")
    axes[-1, 0].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=UTC))  # type: ignore[no-untyped-call]
    figure.suptitle(title)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


_SEVERITY_WORDS = {"info", "warning", "critical"}
_DIRECTIONS = {"above", "below"}


def rules_from_file(path: Path) -> list[state_pb2.AlertRule]:
    """Rules from a YAML or JSON file: one rule, or a list (docs/alerts.md has the format).

    ``severity`` may be written ``warning`` as well as ``SEVERITY_WARNING``, a threshold's
    ``direction`` ``above`` as well as ``DIRECTION_ABOVE``.

    Raises:
        UserError: The file is no YAML, or a rule is malformed; the message names its line.
    """
    import yaml

    text = path.read_text(encoding="utf-8-sig")
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not YAML or JSON: {error}") from None
    if root is None:
        raise UserError(f"{path}: no rules in the file")
    nodes = root.value if isinstance(root, yaml.SequenceNode) else [root]
    rules = []
    for index, node in enumerate(nodes):
        where = f"{path}:{node.start_mark.line + 1}: rule {index + 1}"
        item = yaml.safe_load(yaml.serialize(node))
        if not isinstance(item, dict):
            raise UserError(f"{where}: a rule is a mapping of id, field, severity, a condition")
        severity = item.get("severity")
        if isinstance(severity, str) and severity.lower() in _SEVERITY_WORDS:
            item["severity"] = f"SEVERITY_{severity.upper()}"
        threshold = item.get("threshold")
        if isinstance(threshold, dict) and str(threshold.get("direction")).lower() in _DIRECTIONS:
            threshold["direction"] = f"DIRECTION_{threshold['direction'].upper()}"
        try:
            rules.append(ParseDict(item, state_pb2.AlertRule()))
        except ParseError as error:
            raise UserError(f"{where}: {error}") from None
    return rules


def rule_summary(rule: state_pb2.AlertRule) -> str:
    condition = rule.WhichOneof("condition") or ""
    detail = MessageToDict(getattr(rule, condition)) if condition else {}
    return f"{condition} {json.dumps(detail)}"


def _severity(value: int) -> str:
    return events_pb2.Severity.Name(value).removeprefix("SEVERITY_").lower()


# Commands --------------------------------------------------------------------------------


def ingest(
    twin_id: Annotated[str | None, typer.Argument(help="Twin of a single sample.")] = None,
    fields: Annotated[list[str] | None, typer.Argument(help="Field NAME=VALUE ...")] = None,
    csv_file: Annotated[
        Path | None,
        typer.Option("--csv", help="CSV file: twin_id, time, then one column per field."),
    ] = None,
    batch_rows: Annotated[
        int, typer.Option(min=1, max=100_000, help="CSV rows per streamed batch.")
    ] = 5000,
    feed_s: Annotated[
        float | None, typer.Option("--feed", help="Play simulated sensors for this many seconds.")
    ] = None,
    period_s: Annotated[float, typer.Option(help="Seconds between simulated samples.")] = 1.0,
) -> None:
    """Ingest a sample, a CSV file or a simulated feed.

    One sample is stamped now; a CSV file (docs/cli.md) is streamed and acknowledged batch by
    batch; the feed plays the example twins' simulated sensors.

    Example: twinstack ingest line1-press-3 temperature_c=61.5 load=0.8"""
    with open_client() as client:
        if csv_file is not None:
            durable, rejected = ingest_csv(client, csv_file, batch_rows)

            def human() -> None:
                for line in rejected:
                    console.print(f"[red]rejected[/red] {line}", highlight=False)
                console.print(f"{durable:,} row(s) durable, {len(rejected)} batch(es) rejected")

            emit({"durable_rows": durable, "rejected": rejected}, human)
            if rejected:
                raise typer.Exit(1)
        elif feed_s is not None:
            sent = feed(client, feed_s, period_s)
            emit(
                {"points": sent},
                lambda: console.print(f"fed {sent:,} point(s) to the example twins"),
            )
        elif twin_id and fields:
            point = Point(twin_id, parse_assignments(fields, "field"))
            response = client.telemetry.ingest([point])
            emit(
                {"accepted_points": response.accepted_points},
                lambda: console.print(f"accepted {response.accepted_points} point(s)"),
            )
        else:
            raise typer.BadParameter("give TWIN_ID FIELD=VALUE..., --csv FILE or --feed SECONDS")


@state_app.command("get")
def state_get(twin_ids: Annotated[list[str], typer.Argument(help="One or more twins.")]) -> None:
    """Live state: latest values and their times, desired values, alerts."""
    units: dict[str, str] = {}
    with open_client() as client:
        found = client.state.get_states(twin_ids)
        if len(found.states) == 1 and not session.json:
            # Units come from the twin's model; without the registry the table has none.
            with contextlib.suppress(ApiError):
                declared = model_telemetry(client, [found.states[0].twin_id])
                units = {name: str(spec.get("unit", "")) for name, spec in declared.items()}
    states = list(found.states)

    def human() -> None:
        if len(states) == 1:
            console.print(_field_table(states[0], units))
        elif states:
            console.print(state_table(states, "live state"))
        if found.missing_twin_ids:
            console.print("no state for: " + ", ".join(found.missing_twin_ids))

    emit(
        {"states": [state_data(s) for s in states], "missing": list(found.missing_twin_ids)},
        human,
    )
    if found.missing_twin_ids:
        raise typer.Exit(1)


@state_app.command("watch")
def state_watch(
    twin_ids: Annotated[list[str] | None, typer.Argument(help="Twins to watch.")] = None,
    model: Annotated[
        str, typer.Option(help="Twins of this model (or a derived one); quote it.")
    ] = "",
    all_twins: Annotated[bool, typer.Option("--all", help="Every twin.")] = False,
    seconds: Annotated[float | None, typer.Option(help="Stop after this long.")] = None,
) -> None:
    """Follow state changes as they happen.

    A live table on a terminal, one line per change otherwise (JSON lines with --json).

    Example: twinstack state watch --model 'dtmi:twinstack:examples:Machine;1' --seconds 10"""
    with open_client() as client:
        if console.is_terminal and not session.json:
            changes = watch_live(client, twin_ids or [], model, all_twins, seconds)
            console.print(f"{changes} change(s)")
        else:
            watch_lines(client, twin_ids or [], model, all_twins, seconds)


@state_app.command("desire")
def state_desire(
    twin_id: Annotated[str, typer.Argument(help="The twin.")],
    fields: Annotated[list[str], typer.Argument(help="Field NAME=VALUE ...")],
    expected_revision: Annotated[
        int, typer.Option(help="Apply only at this state revision (0: any).")
    ] = 0,
) -> None:
    """Set desired values of a twin.

    They are published to the device side as an event; the delta shows what is not reached."""
    with open_client() as client:
        state = client.state.set_desired(
            twin_id, parse_assignments(fields, "field"), expected_revision=expected_revision
        )
    emit(state_data(state), lambda: console.print(_field_table(state)))


def history(
    twin_ids: Annotated[list[str], typer.Argument(help="Twins.")],
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field", "-f", help="Telemetry field (repeatable; default: all of the model's)."
        ),
    ] = None,
    since: Annotated[str, typer.Option(help="How far back: 90s, 15m, 2h, 7d.")] = "1h",
    aggregation: Annotated[
        str,
        typer.Option(
            "--agg",
            help="none, mean, min, max, first, last, count, sum, median, stddev or percentile.",
        ),
    ] = "mean",
    window: Annotated[
        str | None, typer.Option(help="Aggregation window, e.g. 1m (default: fits --points).")
    ] = None,
    percentile: Annotated[float, typer.Option(help="For --agg percentile (0 to 100).")] = 95.0,
    points: Annotated[int, typer.Option(min=1, max=100_000, help="Most points per series.")] = 200,
    png: Annotated[Path | None, typer.Option(help="Also save a chart as a PNG file.")] = None,
) -> None:
    """Stored telemetry: a table and terminal chart per series, a PNG on request.

    Example: twinstack history line1-press-3 -f temperature_c --since 2h --agg max --window 5m"""
    since_s = parse_duration_s(since)
    if aggregation != "none" and window is None:
        # Enough windows to fill the chart, no finer than a second.
        window_s: float | None = max(1.0, since_s / points)
    else:
        window_s = None if window is None else parse_duration_s(window)
    end = datetime.now(UTC)
    start = end - timedelta(seconds=since_s)
    with open_client() as client:
        declared = model_telemetry(client, twin_ids)
        unknown = sorted(set(field or []) - set(declared))
        if unknown:
            raise UserError(
                f"unknown field(s) {', '.join(unknown)}; the model(s) of "
                f"{', '.join(twin_ids)} have: {', '.join(sorted(declared)) or 'no telemetry'}"
            )
        fields = field or sorted(declared)
        if not field and aggregation not in ("none", "count", "first", "last"):
            # Averages of text and true/false are not defined: by default those fields are left
            # out; named explicitly, the service says why it cannot aggregate them.
            fields = [f for f in fields if declared[f].get("schema") in ("double", "integer")]
        found = client.state.query_history(
            twin_ids,
            fields,
            start,
            end,
            aggregation,
            window_s=window_s,
            percentile=percentile,
            max_points_per_series=points,
        )
    units = {name: str(declared[name].get("unit", "")) for name in declared}
    how = aggregation if aggregation == "none" else f"{aggregation} per {window_s:g} s"
    title = f"{', '.join(twin_ids)}: {how}, {_when(start)} to {_when(end)}"

    def human() -> None:
        table = Table(title=title, title_justify="left")
        for column in ("twin", "field", "unit", "points", "min", "mean", "max", "last", "chart"):
            table.add_column(
                column, justify="left" if column in ("twin", "field", "unit", "chart") else "right"
            )
        for series in found:
            values = series_values(series)
            numbers = [float(v) for v in values if isinstance(v, (int, float))]
            stats = (
                [short(min(numbers)), short(sum(numbers) / len(numbers)), short(max(numbers))]
                if numbers
                else ["", "", ""]
            )
            last = short(values[-1]) if values else ""
            more = "+" if series.truncated else ""
            table.add_row(
                series.twin_id, series.field, units.get(series.field, ""),
                f"{len(values)}{more}", *stats, last, sparkline(numbers, 40),
            )  # fmt: skip
        console.print(table)
        if not found:
            console.print(f"no points stored for {', '.join(fields)} in this window")

    emit(
        [
            {
                "twin_id": s.twin_id,
                "field": s.field,
                "unit": units.get(s.field, ""),
                "time_unix_ns": list(s.time_unix_ns),
                "values": series_values(s),
                "truncated": s.truncated,
            }
            for s in found
        ],
        human,
    )
    if png is not None:
        save_png(found, png, title, units)
        if not session.json:
            console.print(f"chart saved to {png}")


@alerts_app.command("list")
def alerts_list(
    twin_id: Annotated[str, typer.Option(help="Only this twin.")] = "",
    include_cleared: Annotated[bool, typer.Option("--all", help="Cleared alerts too.")] = False,
) -> None:
    """Alerts, active first."""
    with open_client() as client:
        alerts = list(client.state.list_alerts(twin_id, include_cleared=include_cleared))

    def human() -> None:
        table = Table(title=f"{len(alerts)} alert(s)", title_justify="left")
        for column in ("twin", "rule", "severity", "status", "value", "raised (UTC)",
                       "acknowledged", "message"):  # fmt: skip
            table.add_column(column)
        for alert in alerts:
            status = "[red]active[/red]" if alert.active else "cleared"
            acked = alert.acknowledged_by or ("yes" if alert.acknowledged else "")
            table.add_row(
                alert.twin_id, alert.rule_id, _severity(alert.severity), status,
                short(alert.value), short(alert.raised_time.ToDatetime(tzinfo=UTC)), acked,
                alert.message,
            )  # fmt: skip
        console.print(table)

    emit([MessageToDict(a, preserving_proto_field_name=True) for a in alerts], human)


@alerts_app.command("ack")
def alerts_ack(
    twin_id: Annotated[str, typer.Argument(help="The twin that raised it.")],
    rule_id: Annotated[str, typer.Argument(help="The rule that raised it.")],
    by: Annotated[str, typer.Option(help="Who acknowledges.")] = "",
) -> None:
    """Acknowledge an alert."""
    with open_client() as client:
        alert = client.state.acknowledge_alert(twin_id, rule_id, by)
    emit(
        MessageToDict(alert, preserving_proto_field_name=True),
        lambda: console.print(f"acknowledged {alert.twin_id}/{alert.rule_id}"),
    )


@alerts_app.command("rules")
def alerts_rules() -> None:
    """The alert rules."""
    with open_client() as client:
        rules = list(client.state.list_alert_rules())

    def human() -> None:
        table = Table(title=f"{len(rules)} rule(s)", title_justify="left")
        for column in ("id", "scope", "field", "severity", "condition", "revision"):
            table.add_column(column)
        for rule in rules:
            scope = f"model {rule.model_id}" if rule.model_id else f"twin {rule.twin_id}"
            table.add_row(
                rule.id, scope, rule.field, _severity(rule.severity), rule_summary(rule),
                str(rule.revision),
            )  # fmt: skip
        console.print(table)

    emit([MessageToDict(r, preserving_proto_field_name=True) for r in rules], human)


@alerts_app.command("apply")
def alerts_apply(
    path: Annotated[Path, typer.Argument(help="YAML or JSON file: one rule or a list.")],
) -> None:
    """Create or replace alert rules from a file (format: docs/alerts.md)."""
    rules = rules_from_file(path)
    stored = []
    with open_client() as client:
        for rule in rules:
            stored.append(client.state.put_alert_rule(rule))

    def human() -> None:
        for rule in stored:
            console.print(f"rule {rule.id} stored at revision {rule.revision}")

    emit([{"id": r.id, "revision": r.revision} for r in stored], human)


@alerts_app.command("delete")
def alerts_delete(rule_id: Annotated[str, typer.Argument(help="The rule's id.")]) -> None:
    """Delete an alert rule; its open alerts clear."""
    with open_client() as client:
        client.state.delete_alert_rule(rule_id)
    emit({"deleted": rule_id}, lambda: console.print(f"rule {rule_id} deleted"))
