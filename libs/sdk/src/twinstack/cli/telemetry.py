"""CLI commands of the monitoring half: ingest (a sample, a CSV file, a simulated feed), live
state (get, watch, desired values), history (table, terminal chart, PNG) and alerts."""

from __future__ import annotations

import csv
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf.json_format import MessageToDict, ParseDict
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from twinstack.api.common.v1 import events_pb2
from twinstack.api.ingestion.v1 import ingestion_pb2
from twinstack.api.state.v1 import state_pb2
from twinstack.cli.shared import (
    TokenOption,
    console,
    fail,
    open_client,
    parse_assignments,
    parse_scalar,
)
from twinstack.common.values import to_python
from twinstack.sdk.client import ApiError, Point, TwinstackClient, make_frame
from twinstack.sdk.examples import SensorFeeder

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


def _parse_time_ns(text: str) -> int:
    if re.fullmatch(r"\d{16,}", text):
        return int(text)
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1e9)


def csv_batches(
    path: Path, batch_rows: int
) -> Iterator[tuple[ingestion_pb2.IngestStreamRequest, int]]:
    """Stream requests of up to ``batch_rows`` rows of a CSV file, as frames per twin.

    The file has a header: ``twin_id``, ``time`` (RFC 3339 or integer nanoseconds), then one
    column per field; an empty cell means the row has no value for that field.
    """
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"twin_id", "time"} <= set(reader.fieldnames):
            raise typer.BadParameter("the CSV header needs twin_id and time columns")
        chunk: list[dict[str, str]] = []
        for row in reader:
            chunk.append(row)
            if len(chunk) == batch_rows:
                yield _frames_request(chunk), len(chunk)
                chunk = []
        if chunk:
            yield _frames_request(chunk), len(chunk)


def _frames_request(rows: list[dict[str, str]]) -> ingestion_pb2.IngestStreamRequest:
    groups: dict[tuple[str, tuple[str, ...]], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        fields = tuple(k for k, v in row.items() if k not in ("twin_id", "time") and v != "")
        groups[(row["twin_id"], fields)].append(row)
    request = ingestion_pb2.IngestStreamRequest()
    for (twin_id, fields), members in groups.items():
        times = [_parse_time_ns(r["time"]) for r in members]
        columns = {name: [parse_scalar(r[name]) for r in members] for name in fields}
        request.frames.append(make_frame(twin_id, times, columns))
    return request


def ingest_csv(client: TwinstackClient, path: Path, batch_rows: int) -> tuple[int, list[str]]:
    """Streams a CSV file in; returns the rows made durable and the rejections."""
    total_rows = max(0, sum(1 for _ in path.open()) - 1)
    sizes: list[int] = []
    rejected: list[str] = []
    durable = 0

    def requests() -> Iterator[ingestion_pb2.IngestStreamRequest]:
        for request, rows in csv_batches(path, batch_rows):
            sizes.append(rows)
            yield request

    with Progress(
        TextColumn("[bold]ingest[/bold] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} rows"),
        TimeElapsedColumn(),
    ) as progress:
        task = progress.add_task(path.name, total=total_rows)
        for ack in client.ingest_stream(requests()):
            rows = sizes[ack.sequence - 1]
            if ack.code == 0:
                durable += rows
            else:
                first = ack.violations[0] if ack.violations else None
                where = f" ({first.field}: {first.description})" if first else ""
                rejected.append(f"batch {ack.sequence}: {ack.message}{where}")
            progress.advance(task, rows)
    return durable, rejected


def feed(client: TwinstackClient, seconds: float, period_s: float) -> int:
    """Plays the simulated sensors of the example twins for ``seconds``."""
    feeder = SensorFeeder(client, period_s=period_s)
    feeder.start()
    try:
        with Progress(
            TextColumn("[bold]feeding[/bold] example twins"), BarColumn(), TimeElapsedColumn()
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
        raise typer.BadParameter(f"the feed failed: {feeder.last_error}")
    return feeder.sent_points


def state_table(states: list[state_pb2.TwinState], title: str) -> Table:
    """Twins as rows: connectivity, fields, delta, active alerts, revision."""
    table = Table(title=title, title_justify="left")
    for column in ("twin", "connectivity", "reported", "delta", "alerts", "revision"):
        table.add_column(column, justify="right" if column == "revision" else "left")
    for state in sorted(states, key=lambda s: s.twin_id):
        reported = ", ".join(
            f"{name}={_short(to_python(state.reported[name].value))}"
            for name in sorted(state.reported)
        )
        delta = ", ".join(f"{n}→{_short(to_python(v))}" for n, v in sorted(state.delta.items()))
        active = [a for a in state.alerts.values() if a.active]
        alerts = ", ".join(f"[red]{a.rule_id}[/red]" for a in active)
        connectivity = state_pb2.Connectivity.Name(state.connectivity).removeprefix("CONNECTIVITY_")
        colour = "green" if connectivity == "ONLINE" else "yellow"
        table.add_row(
            state.twin_id,
            f"[{colour}]{connectivity.lower()}[/{colour}]",
            reported,
            delta,
            alerts,
            str(state.revision),
        )
    return table


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def watch_live(
    client: TwinstackClient,
    twin_ids: list[str],
    model_id: str,
    all_twins: bool,
    seconds: float | None,
) -> int:
    """A table that redraws on every change; returns the number of changes seen."""
    states: dict[str, state_pb2.TwinState] = {}
    changes = 0
    title = "watching " + (model_id or ", ".join(twin_ids) or "every twin")
    with Live(state_table([], title), refresh_per_second=8) as live:
        for response in client.watch(
            twin_ids, model_id=model_id, all_twins=all_twins, timeout_s=seconds
        ):
            states[response.state.twin_id] = response.state
            changes += 1
            live.update(state_table(list(states.values()), f"{title} — {changes} change(s)"))
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


def history_series(
    client: TwinstackClient,
    twin_ids: list[str],
    fields: list[str],
    since_s: float,
    aggregation: str,
    window_s: float | None,
    max_points: int,
    percentile: float,
) -> list[state_pb2.HistorySeries]:
    end = datetime.now(UTC)
    return client.query_history(
        twin_ids,
        fields,
        end - timedelta(seconds=since_s),
        end,
        aggregation,
        window_s=window_s,
        percentile=percentile,
        max_points_per_series=max_points,
    )


def series_values(series: state_pb2.HistorySeries) -> list[Any]:
    kind = series.WhichOneof("values")
    return list(getattr(series, kind).values) if kind else []


def save_png(series: list[state_pb2.HistorySeries], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fields = sorted({s.field for s in series})
    figure, axes = plt.subplots(
        len(fields), 1, figsize=(10, 2.6 * len(fields)), sharex=True, squeeze=False
    )
    for axis, name in zip(axes[:, 0], fields, strict=True):
        for item in (s for s in series if s.field == name):
            times = [datetime.fromtimestamp(t / 1e9, tz=UTC) for t in item.time_unix_ns]
            values = [float(v) for v in series_values(item)]
            axis.plot(times, values, label=item.twin_id, linewidth=1)
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
        axis.legend(loc="upper left", fontsize="small")
    axes[0, 0].set_title(title)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def rule_from_file(path: Path) -> list[state_pb2.AlertRule]:
    """Rules from a YAML or JSON file: one rule, or a list, in the AlertRule JSON form."""
    import yaml

    data = yaml.safe_load(path.read_text())
    items = data if isinstance(data, list) else [data]
    return [ParseDict(item, state_pb2.AlertRule()) for item in items]


def rule_summary(rule: state_pb2.AlertRule) -> str:
    condition = rule.WhichOneof("condition") or ""
    detail = MessageToDict(getattr(rule, condition)) if condition else {}
    return f"{condition} {detail}"


# Commands --------------------------------------------------------------------------------


def ingest(
    twin_id: Annotated[str | None, typer.Argument(help="Twin of a single sample.")] = None,
    fields: Annotated[list[str] | None, typer.Argument(help="Field NAME=VALUE ...")] = None,
    csv_file: Annotated[
        Path | None,
        typer.Option("--csv", help="CSV with twin_id, time, then one column per field."),
    ] = None,
    batch_rows: Annotated[int, typer.Option(min=1, max=100_000)] = 5000,
    feed_s: Annotated[
        float | None, typer.Option("--feed", help="Play simulated sensors for this many seconds.")
    ] = None,
    period_s: Annotated[float, typer.Option(help="Feed period.")] = 1.0,
    token: TokenOption = None,
) -> None:
    """Ingest one sample (now), a CSV file (streamed, with per-batch acknowledgements), or a
    simulated feed of the example twins."""
    with open_client(token) as client:
        try:
            if csv_file is not None:
                durable, rejected = ingest_csv(client, csv_file, batch_rows)
                for line in rejected:
                    console.print(f"[red]rejected[/red] {line}")
                console.print(f"{durable:,} row(s) durable, {len(rejected)} batch(es) rejected")
                if rejected:
                    raise typer.Exit(1)
            elif feed_s is not None:
                sent = feed(client, feed_s, period_s)
                console.print(f"fed {sent:,} point(s) to the example twins")
            elif twin_id and fields:
                response = client.ingest([Point(twin_id, parse_assignments(fields, "field"))])
                console.print(f"accepted {response.accepted_points} point(s)")
            else:
                raise typer.BadParameter(
                    "give TWIN_ID FIELD=VALUE..., --csv FILE or --feed SECONDS"
                )
        except ApiError as error:
            raise fail(error) from error


@state_app.command("get")
def state_get(twin_ids: list[str], token: TokenOption = None) -> None:
    """Live state of twins: connectivity, latest values, delta to desired, active alerts."""
    with open_client(token) as client:
        try:
            found = client.get_states(twin_ids)
        except ApiError as error:
            raise fail(error) from error
    if len(found.states) == 1:
        state = found.states[0]
        table = Table(title=f"{state.twin_id} (revision {state.revision})", title_justify="left")
        for column in ("field", "reported", "source time", "desired"):
            table.add_column(column, justify="right" if column != "field" else "left")
        for name in sorted(set(state.reported) | set(state.desired)):
            reported = state.reported.get(name)
            desired = state.desired.get(name)
            table.add_row(
                name,
                "" if reported is None else str(to_python(reported.value)),
                "" if reported is None else reported.time.ToJsonString(),
                "" if desired is None else str(to_python(desired.value)),
            )
        console.print(table)
    console.print(state_table(list(found.states), "live state"))
    if found.missing_twin_ids:
        console.print("no state for: " + ", ".join(found.missing_twin_ids))
        raise typer.Exit(1)


@state_app.command("watch")
def state_watch(
    twin_ids: Annotated[list[str] | None, typer.Argument()] = None,
    model: Annotated[str, typer.Option(help="Twins of this model (or a derived one).")] = "",
    all_twins: Annotated[bool, typer.Option("--all", help="Every twin.")] = False,
    seconds: Annotated[float | None, typer.Option(help="Stop after this long.")] = None,
    token: TokenOption = None,
) -> None:
    """A live table of twins, redrawn on every change of their state."""
    with open_client(token) as client:
        try:
            changes = watch_live(client, twin_ids or [], model, all_twins, seconds)
        except ApiError as error:
            raise fail(error) from error
    console.print(f"{changes} change(s)")


@state_app.command("desire")
def state_desire(
    twin_id: str,
    fields: Annotated[list[str], typer.Argument(help="Field NAME=VALUE ...")],
    expected_revision: Annotated[int, typer.Option(help="State revision you read.")] = 0,
    token: TokenOption = None,
) -> None:
    """Set desired values of a twin (published to the device side as an event)."""
    with open_client(token) as client:
        try:
            state = client.set_desired(
                twin_id, parse_assignments(fields, "field"), expected_revision=expected_revision
            )
        except ApiError as error:
            raise fail(error) from error
    console.print(state_table([state], f"{twin_id}: desired values set"))


def history(
    twin_ids: Annotated[list[str], typer.Argument(help="Twins.")],
    field: Annotated[list[str], typer.Option("--field", "-f", help="Fields (repeat).")],
    since: Annotated[str, typer.Option(help="How far back: 90s, 15m, 2h, 7d.")] = "1h",
    aggregation: Annotated[
        str,
        typer.Option(
            "--agg",
            help="none, mean, min, max, first, last, count, sum, median, stddev, percentile",
        ),
    ] = "mean",
    window: Annotated[str | None, typer.Option(help="Aggregation window, e.g. 1m.")] = None,
    percentile: Annotated[float, typer.Option(help="For --agg percentile.")] = 95.0,
    points: Annotated[int, typer.Option(min=1, max=100_000, help="Most points per series.")] = 200,
    png: Annotated[Path | None, typer.Option(help="Also save a chart as a PNG file.")] = None,
    token: TokenOption = None,
) -> None:
    """Telemetry history: a table with a terminal chart per series, and a PNG on request."""
    window_s = None if window is None else parse_duration_s(window)
    with open_client(token) as client:
        try:
            found = history_series(
                client,
                twin_ids,
                field,
                parse_duration_s(since),
                aggregation,
                window_s,
                points,
                percentile,
            )
        except ApiError as error:
            raise fail(error) from error
    table = Table(title=f"history, last {since}, {aggregation}", title_justify="left")
    for column in ("twin", "field", "points", "min", "mean", "max", "last", "chart"):
        table.add_column(
            column, justify="left" if column in ("twin", "field", "chart") else "right"
        )
    for series in found:
        values = series_values(series)
        numbers = [float(v) for v in values if isinstance(v, (int, float))]
        stats = (
            [f"{min(numbers):.4g}", f"{sum(numbers) / len(numbers):.4g}", f"{max(numbers):.4g}"]
            if numbers
            else ["", "", ""]
        )
        last = _short(values[-1]) if values else ""
        more = "+" if series.truncated else ""
        table.add_row(
            series.twin_id,
            series.field,
            f"{len(values)}{more}",
            *stats,
            last,
            sparkline(numbers, 40),
        )
    console.print(table)
    if png is not None:
        save_png(found, png, f"{', '.join(twin_ids)}: last {since}, {aggregation}")
        console.print(f"chart saved to {png}")


@alerts_app.command("list")
def alerts_list(
    twin_id: Annotated[str, typer.Option(help="Only this twin.")] = "",
    include_cleared: Annotated[bool, typer.Option("--all", help="Cleared alerts too.")] = False,
    token: TokenOption = None,
) -> None:
    """Alerts, active first."""
    with open_client(token) as client:
        try:
            alerts = list(client.list_alerts(twin_id, include_cleared=include_cleared))
        except ApiError as error:
            raise fail(error) from error
    table = Table(title=f"{len(alerts)} alert(s)", title_justify="left")
    for column in (
        "twin",
        "rule",
        "severity",
        "status",
        "value",
        "raised",
        "acknowledged",
        "message",
    ):
        table.add_column(column)
    for alert in alerts:
        severity = events_pb2.Severity.Name(alert.severity).removeprefix("SEVERITY_").lower()
        status = "[red]active[/red]" if alert.active else "cleared"
        acked = alert.acknowledged_by or ("yes" if alert.acknowledged else "")
        table.add_row(
            alert.twin_id, alert.rule_id, severity, status, f"{alert.value:.4g}",
            alert.raised_time.ToJsonString(), acked, alert.message,
        )  # fmt: skip
    console.print(table)


@alerts_app.command("ack")
def alerts_ack(
    twin_id: str,
    rule_id: str,
    by: Annotated[str, typer.Option(help="Who acknowledges.")] = "",
    token: TokenOption = None,
) -> None:
    """Acknowledge an alert."""
    with open_client(token) as client:
        try:
            alert = client.acknowledge_alert(twin_id, rule_id, by)
        except ApiError as error:
            raise fail(error) from error
    console.print(f"acknowledged {alert.twin_id}/{alert.rule_id}")


@alerts_app.command("rules")
def alerts_rules(token: TokenOption = None) -> None:
    """The alert rules."""
    with open_client(token) as client:
        try:
            rules = client.list_alert_rules()
        except ApiError as error:
            raise fail(error) from error
    table = Table(title=f"{len(rules)} rule(s)", title_justify="left")
    for column in ("id", "scope", "field", "severity", "condition", "revision"):
        table.add_column(column)
    for rule in rules:
        scope = rule.model_id or f"twin {rule.twin_id}"
        severity = events_pb2.Severity.Name(rule.severity).removeprefix("SEVERITY_").lower()
        table.add_row(rule.id, scope, rule.field, severity, rule_summary(rule), str(rule.revision))
    console.print(table)


@alerts_app.command("apply")
def alerts_apply(path: Path, token: TokenOption = None) -> None:
    """Create or replace rules from a YAML/JSON file (one rule or a list)."""
    with open_client(token) as client:
        try:
            for rule in rule_from_file(path):
                stored = client.put_alert_rule(rule)
                console.print(f"rule {stored.id} stored at revision {stored.revision}")
        except ApiError as error:
            raise fail(error) from error


@alerts_app.command("delete")
def alerts_delete(rule_id: str, token: TokenOption = None) -> None:
    """Delete a rule."""
    with open_client(token) as client:
        try:
            client.delete_alert_rule(rule_id)
        except ApiError as error:
            raise fail(error) from error
    console.print(f"rule {rule_id} deleted")
