"""``twinstack sim``: scenario runs, sweeps with a progress bar, forecasts, calibration,
reports, and applying the best scenario.

pandas and the report code are imported by the commands that use them: importing pandas costs
seconds, and every ``twinstack`` command would otherwise pay for it when it starts.
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from google.protobuf.json_format import MessageToDict
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from twinstack.api.simulation.v1 import simulation_pb2, sweep_pb2
from twinstack.cli.shared import (
    UserError,
    console,
    emit,
    errors,
    open_client,
    session,
    show_api_error,
)
from twinstack.sdk import Client, RevisionMismatchError
from twinstack.sdk._sweeps import state_name, sweep_spec
from twinstack.sdk.values import to_python

if TYPE_CHECKING:
    import pandas as pd

sim_app = typer.Typer(
    help="Simulation: scenarios, sweeps, forecasts, calibration.", no_args_is_help=True
)

TwinsOption = Annotated[list[str] | None, typer.Option("--twin", help="Twin id (repeatable).")]
QueryOption = Annotated[str, typer.Option(help="Registry query selecting twins.")]
ReportOption = Annotated[Path | None, typer.Option(help="Write a report: .png or .html.")]
HorizonOption = Annotated[float, typer.Option(help="Seconds to simulate ahead.")]
StepOption = Annotated[float, typer.Option(help="Integration step in seconds.")]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="NAME=VALUE override of a parameter or input.")
]
ThresholdOption = Annotated[
    list[str] | None,
    typer.Option(help="OBSERVABLE=VALUE: report time above it and its first crossing."),
]
NoiseOption = Annotated[
    list[str] | None, typer.Option(help="INPUT=SIGMA: noise added to an input at every step.")
]
SeedOption = Annotated[int, typer.Option(help="Seed of sampling and noise.")]


def _numbers(items: list[str] | None, what: str) -> dict[str, float]:
    values = {}
    for item in items or []:
        name, _, text = item.partition("=")
        try:
            values[name] = float(text)
        except ValueError as error:
            raise typer.BadParameter(f"{item!r} is not NAME=NUMBER", param_hint=what) from error
    return values


def _ranges(items: list[str] | None) -> dict[str, tuple[float, ...]]:
    ranges: dict[str, tuple[float, ...]] = {}
    for item in items or []:
        name, _, span = item.partition("=")
        try:
            ranges[name] = tuple(float(part) for part in span.split(":"))
        except ValueError as error:
            raise typer.BadParameter(f"{item!r} is not NAME=MIN:MAX[:LEVELS]") from error
        if len(ranges[name]) not in (2, 3):
            raise typer.BadParameter(f"{item!r} is not NAME=MIN:MAX[:LEVELS]")
    return ranges


def _fmt(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.4g}"


@sim_app.command("models")
def models() -> None:
    """The built-in models, their parameters and KPIs."""
    with open_client() as client:
        found = client.simulation.list_builtin_models()

    def human() -> None:
        table = Table(title="built-in models")
        for column in ("model", "use case", "parameters (default)", "KPIs"):
            table.add_column(column)
        for model in found:
            parameters = ", ".join(f"{p.name}={p.default:g}" for p in model.parameters)
            table.add_row(model.name, model.use_case, parameters, ", ".join(model.kpis))
        console.print(table)

    emit([MessageToDict(m, preserving_proto_field_name=True) for m in found], human)


@sim_app.command("run")
def run(
    twin: TwinsOption = None,
    query: QueryOption = "",
    horizon_s: HorizonOption = 3600.0,
    step_s: StepOption = 1.0,
    set_: SetOption = None,
    threshold: ThresholdOption = None,
    report: ReportOption = None,
) -> None:
    """Run one what-if scenario of each selected twin.

    Forks the live twins and shows KPIs; --report draws the trajectories.

    Example: twinstack sim run --twin line1-press-3 --horizon-s 600 --set load=1.4"""
    with open_client() as client, console.status("running the scenario"):
        response = client.simulation.run_scenario(
            twin or [],
            query=query,
            horizon_s=horizon_s,
            step_s=step_s,
            overrides=_numbers(set_, "--set"),
            thresholds=_numbers(threshold, "--threshold"),
        )

    def human() -> None:
        table = Table(title=f"{response.model_id}: scenario over {horizon_s:g} s")
        table.add_column("KPI")
        for result in response.twins:
            table.add_column(f"{result.twin_id} (rev {result.state_revision})", justify="right")
        names = sorted({name for t in response.twins for name in t.kpis})
        for name in names:
            table.add_row(name, *(_fmt(result.kpis[name]) for result in response.twins))
        console.print(table)

    emit(
        {
            "model_id": response.model_id,
            "twins": [
                {"twin_id": t.twin_id, "state_revision": t.state_revision, "kpis": dict(t.kpis)}
                for t in response.twins
            ],
        },
        human,
    )
    if report is not None:
        import matplotlib
        import pandas as pd

        from twinstack.sdk.results import scenario_frame, write_report

        frame = scenario_frame(response)
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        observables = [c for c in frame.columns if c not in ("twin_id", "time_s")]
        figure, axes = plt.subplots(
            len(observables), 1, figsize=(9, 2.8 * len(observables)), squeeze=False
        )
        for axis, name in zip(axes[:, 0], observables, strict=True):
            for twin_id, rows in frame.groupby("twin_id"):
                axis.plot(rows["time_s"], rows[name], label=str(twin_id))
            axis.set_title(name)
            axis.set_ylabel(name)
            axis.legend(fontsize=7)
        axes[-1, 0].set_xlabel("time since the snapshot (s)")
        figure.suptitle(
            f"{response.model_id}: one scenario per twin over {horizon_s:g} s "
            f"({len(response.twins)} twin(s))"
        )
        figure.tight_layout(rect=(0, 0, 1, 0.96))
        write_report(
            report,
            "scenario",
            figure,
            {
                "KPIs": pd.DataFrame(
                    [{"twin_id": t.twin_id, **dict(t.kpis)} for t in response.twins]
                )
            },
        )
        console.print(f"report: {report}")


def _kpi_table(sweep: sweep_pb2.Sweep) -> Table:
    state = state_name(sweep.state)
    table = Table(
        title=f"sweep {sweep.sweep_id}: {state}, {sweep.scenarios_done:,}/"
        f"{sweep.scenarios_total:,} scenarios, {sweep.chunks_done}/{sweep.chunks_total} chunks"
        + (f", {sweep.summary.diverged} diverged" if sweep.summary.diverged else "")
        + (f" ({sweep.failure_reason})" if sweep.failure_reason else "")
    )
    for column in ("KPI", "mean", "min", "p05", "p50", "p95", "max", "missing"):
        table.add_column(column, justify="left" if column == "KPI" else "right")
    for kpi in sweep.summary.kpis:
        table.add_row(
            kpi.name,
            *(_fmt(v) for v in (kpi.mean, kpi.min, kpi.p05, kpi.p50, kpi.p95, kpi.max)),
            str(kpi.missing),
        )
    return table


SweepIdArgument = Annotated[
    str, typer.Argument(help="The sweep's id, or `latest` for the newest sweep.")
]


def _resolve(client: Client, sweep_id: str) -> str:
    if sweep_id != "latest":
        return sweep_id
    newest = next(iter(client.sweeps.list(page_size=1)), None)
    if newest is None:
        raise UserError("no sweeps yet: submit one with `twinstack sim submit`")
    return newest.sweep_id


def _show_sweep(sweep: sweep_pb2.Sweep) -> None:
    emit(
        MessageToDict(sweep, preserving_proto_field_name=True),
        lambda: console.print(_kpi_table(sweep)),
    )


def _follow(client: Client, sweep_id: str) -> sweep_pb2.Sweep:
    """A progress bar of the sweep until it ends (re-attaching after a lost connection)."""
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=session.json,
    ) as progress:
        task = progress.add_task(f"sweep {sweep_id[:8]}", total=None)
        sweep = client.sweeps.get(sweep_id)
        for sweep in client.sweeps.watch(sweep_id):
            progress.update(
                task,
                total=sweep.scenarios_total,
                completed=sweep.scenarios_done,
                description=f"sweep {sweep_id[:8]} {state_name(sweep.state)} "
                f"({sweep.chunks_done}/{sweep.chunks_total} chunks)",
            )
    return sweep


@sim_app.command("submit")
def submit(
    model: Annotated[
        str, typer.Option(help="A built-in model (see `sim models`); or use --twin/--query.")
    ] = "",
    twin: TwinsOption = None,
    query: QueryOption = "",
    sampler: Annotated[str, typer.Option(help="grid, random, lhs or sobol.")] = "lhs",
    range_: Annotated[
        list[str] | None,
        typer.Option("--range", help="NAME=MIN:MAX (grid: NAME=MIN:MAX:LEVELS); repeatable."),
    ] = None,
    samples: Annotated[
        int, typer.Option(min=0, help="Points to draw (the grid's size follows its levels).")
    ] = 1000,
    replicates: Annotated[
        int, typer.Option(min=1, help="Monte Carlo replicates of each point.")
    ] = 1,
    set_: SetOption = None,
    noise: NoiseOption = None,
    threshold: ThresholdOption = None,
    horizon_s: HorizonOption = 3600.0,
    step_s: StepOption = 1.0,
    seed: SeedOption = 0,
    summaries_only: Annotated[
        bool, typer.Option(help="Store no rows, only summaries (10^8 scenarios and more).")
    ] = False,
    objective: Annotated[str, typer.Option(help="A KPI to rank the best scenarios by.")] = "",
    maximize: Annotated[bool, typer.Option(help="Rank the largest objective first.")] = False,
    request_id: Annotated[
        str, typer.Option(help="Makes a retried submit return the same sweep.")
    ] = "",
    submitter: Annotated[str, typer.Option(help="Who submits (queue limits, listing).")] = "",
    watch: Annotated[
        bool, typer.Option(help="Follow it with a progress bar until it ends.")
    ] = False,
) -> None:
    """Submit a sweep: it runs on the Ray cluster whether or not this command stays.

    Example: twinstack sim submit --model pump_thermal --samples 50000
    --range load=0.5:1.0 --range ambient_c=15:35 --watch"""
    spec = sweep_spec(
        model,
        twin_ids=twin or [],
        query=query,
        sampler=sampler,
        ranges=_ranges(range_),  # type: ignore[arg-type]
        samples=samples,
        replicates=replicates,
        overrides=_numbers(set_, "--set"),
        input_noise=_numbers(noise, "--noise"),
        thresholds=_numbers(threshold, "--threshold"),
        horizon_s=horizon_s,
        step_s=step_s,
        seed=seed,
        summaries_only=summaries_only,
        objective=objective,
        maximize=maximize,
    )
    with open_client() as client:
        sweep = client.sweeps.submit(spec, request_id=request_id, submitter=submitter)
        if not watch:
            emit(
                MessageToDict(sweep, preserving_proto_field_name=True),
                lambda: console.print(
                    f"sweep {sweep.sweep_id} {state_name(sweep.state)}: "
                    f"{sweep.scenarios_total:,} scenarios in {sweep.chunks_total} chunks; "
                    f"follow it with `twinstack sim watch {sweep.sweep_id}`"
                ),
            )
            return
        sweep = _follow(client, sweep.sweep_id)
    _show_sweep(sweep)


@sim_app.command("watch")
def watch(sweep_id: SweepIdArgument) -> None:
    """Follow a sweep with a progress bar until it ends (Ctrl-C leaves it running)."""
    with open_client() as client:
        sweep = _follow(client, _resolve(client, sweep_id))
    _show_sweep(sweep)


@sim_app.command("status")
def status(sweep_id: SweepIdArgument) -> None:
    """A sweep's state, progress and KPI summary."""
    with open_client() as client:
        sweep = client.sweeps.get(_resolve(client, sweep_id))
    _show_sweep(sweep)


@sim_app.command("list")
def list_(
    state: Annotated[
        list[str] | None,
        typer.Option(help="queued, running, succeeded, failed or cancelled; repeatable."),
    ] = None,
    submitter: Annotated[str, typer.Option(help="Only this submitter's.")] = "",
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 50,
) -> None:
    """Sweeps, newest first."""
    with open_client() as client:
        sweeps = list(itertools.islice(client.sweeps.list(state or [], submitter=submitter), limit))

    def human() -> None:
        table = Table(title=f"{len(sweeps)} sweep(s)")
        for column in ("sweep", "state", "submitter", "scenarios", "chunks", "created"):
            table.add_column(column)
        for sweep in sweeps:
            table.add_row(
                sweep.sweep_id,
                state_name(sweep.state),
                sweep.submitter,
                f"{sweep.scenarios_done:,}/{sweep.scenarios_total:,}",
                f"{sweep.chunks_done}/{sweep.chunks_total}",
                sweep.create_time.ToDatetime().isoformat(timespec="seconds"),
            )
        console.print(table)

    emit([MessageToDict(s, preserving_proto_field_name=True) for s in sweeps], human)


@sim_app.command("cancel")
def cancel(sweep_id: SweepIdArgument) -> None:
    """Stop a queued or running sweep and free its cluster resources."""
    with open_client() as client:
        sweep = client.sweeps.cancel(_resolve(client, sweep_id))
    emit(
        MessageToDict(sweep, preserving_proto_field_name=True),
        lambda: console.print(f"sweep {sweep.sweep_id} {state_name(sweep.state)}"),
    )


@sim_app.command("results")
def results(
    sweep_id: SweepIdArgument,
    directory: Annotated[Path, typer.Argument(help="Where its Parquet parts go.")],
) -> None:
    """Download a succeeded sweep's rows as Parquet parts (a partial download resumes);
    read them with pyarrow.dataset or `twinstack.sdk.results.sweep_frame`."""
    with open_client() as client:
        target = client.sweeps.download_results(_resolve(client, sweep_id), directory)
    parts = sorted(target.glob("part-*.parquet"))
    size = sum(part.stat().st_size for part in parts)
    emit(
        {"directory": str(target), "parts": len(parts), "bytes": size},
        lambda: console.print(f"{len(parts)} part(s), {size:,} bytes in {target}"),
    )


@sim_app.command("report")
def report_(
    sweep_id: SweepIdArgument,
    output: Annotated[Path, typer.Option(help="The HTML (or PNG) report.")],
    results_dir: Annotated[
        Path | None, typer.Option(help="Downloaded parts (plots of rows; summaries otherwise).")
    ] = None,
) -> None:
    """An HTML or PNG report of a sweep: KPI histograms, sensitivities, best scenarios."""
    import pandas as pd

    from twinstack.sdk.results import summary_figure, sweep_figure, sweep_frame, write_report

    with open_client() as client:
        sweep = client.sweeps.get(_resolve(client, sweep_id))
    summary = pd.DataFrame(
        [
            {"kpi": k.name, "mean": k.mean, "p05": k.p05, "p50": k.p50, "p95": k.p95}
            for k in sweep.summary.kpis
        ]
    )
    if results_dir is not None:
        frame = sweep_frame(results_dir)
        kpis = [k.name for k in sweep.summary.kpis if k.missing < sweep.scenarios_total][:4]
        figure = sweep_figure(frame, kpis, sorted(sweep.spec.ranges))
    else:
        figure = summary_figure(sweep)
    figure.suptitle(f"sweep {sweep.sweep_id[:8]}: {sweep.scenarios_total:,} scenarios")
    best = pd.DataFrame(
        [
            {"scenario": b.scenario, "objective": b.objective, **dict(b.values)}
            for b in sweep.summary.best
        ]
    )
    write_report(
        output, f"sweep {sweep.sweep_id}", figure, {"KPIs": summary, "best scenarios": best}
    )
    console.print(f"report: {output}")


@sim_app.command("apply")
def apply(
    results: Annotated[Path, typer.Argument(help="Parquet results of a sweep of twins.")],
    kpi: Annotated[str, typer.Option(help="KPI to optimise.")],
    maximize: Annotated[bool, typer.Option(help="Pick the highest value.")] = False,
    latest: Annotated[
        bool,
        typer.Option(help="Condition on the current state revision, not the sweep's (fed twins)."),
    ] = False,
) -> None:
    """Apply the best scenario of a sweep as desired values.

    Its inputs become desired values, conditionally on the state revision the sweep started
    from."""
    from twinstack.sdk.results import apply_scenario, best_scenario, sweep_frame

    frame = sweep_frame(results)
    row = best_scenario(frame, kpi, minimize=not maximize)
    with open_client() as client:
        try:
            state = apply_scenario(client, frame, row, latest=latest)
        except RevisionMismatchError as error:
            show_api_error(error)
            errors.print(
                "the twin's state moved on since the sweep began (telemetry changes it too); "
                "--latest applies the scenario to the current state",
                highlight=False,
            )
            raise typer.Exit(1) from None
    desired = {name: to_python(field.value) for name, field in state.desired.items()}
    emit(
        {"scenario": int(row["scenario"]), "twin_id": state.twin_id, "desired": desired,
         "revision": state.revision},
        lambda: console.print(
            f"scenario {int(row['scenario'])} applied to {state.twin_id}: "
            + ", ".join(f"{k}={v}" for k, v in desired.items())
            + f" (revision {state.revision})"
        ),
    )  # fmt: skip


@sim_app.command("forecast")
def forecast(
    twin: TwinsOption = None,
    query: QueryOption = "",
    horizon_s: HorizonOption = 3600.0,
    step_s: StepOption = 1.0,
    samples: Annotated[int, typer.Option(min=1, help="Monte Carlo runs per twin.")] = 1000,
    uncertain: Annotated[
        list[str] | None,
        typer.Option(help="NAME=MIN:MAX: a parameter drawn uniformly per run (repeatable)."),
    ] = None,
    noise: NoiseOption = None,
    seed: SeedOption = 0,
    report: ReportOption = None,
) -> None:
    """Forecast failure probabilities from live state.

    Monte Carlo runs give each condition's probability and time to failure."""
    spans = {name: (span[0], span[1]) for name, span in _ranges(uncertain).items()}
    with open_client() as client:
        with console.status(f"forecasting {samples} runs per twin"):
            response = client.simulation.forecast(
                twin or [],
                query=query,
                horizon_s=horizon_s,
                step_s=step_s,
                samples=samples,
                uncertain=spans,
                input_noise=_numbers(noise, "--noise"),
                seed=seed,
            )
        history = _recent_history(client, response, horizon_s) if report else {}
    emit(
        MessageToDict(response, preserving_proto_field_name=True),
        lambda: _forecast_table(response, horizon_s),
    )
    if report is not None:
        from twinstack.sdk.results import forecast_figure, write_report

        figure = forecast_figure(response, history)
        figure.suptitle(
            f"forecast {response.forecast_id[:8]} of {response.model_id}: {samples:,} runs per "
            f"twin, {horizon_s:g} s from {response.start_time.ToJsonString()}"
        )
        figure.tight_layout(rect=(0, 0, 1, 0.96))
        write_report(report, f"forecast {response.forecast_id}", figure, {})
        if not session.json:
            console.print(f"report: {report}")


def _forecast_table(response: simulation_pb2.ForecastResponse, horizon_s: float) -> None:
    table = Table(title=f"forecast {response.forecast_id[:8]}: {horizon_s:g} s ahead")
    for column in (
        "twin",
        "condition",
        "severity",
        "probability",
        "TTF p05",
        "TTF p50",
        "TTF p95",
        "alert",
    ):
        table.add_column(
            column, justify="left" if column in ("twin", "condition", "severity") else "right"
        )
    for result in response.twins:
        for risk in result.risks:
            table.add_row(
                result.twin_id,
                risk.condition,
                risk.severity,
                f"{risk.probability:.1%}",
                _fmt(risk.time_to_failure_p05_s),
                _fmt(risk.time_to_failure_p50_s),
                _fmt(risk.time_to_failure_p95_s),
                "yes" if risk.alerted else "",
            )
    console.print(table)


def _recent_history(
    client: Client, response: simulation_pb2.ForecastResponse, horizon_s: float
) -> dict[str, pd.DataFrame]:
    """The telemetry behind each fan, as long before the start as the horizon is long."""
    import pandas as pd

    start = response.start_time.ToDatetime(tzinfo=UTC)
    found: dict[str, pd.DataFrame] = {}
    for twin in response.twins:
        names = [fan.name for fan in twin.fans]
        series = client.state.query_history(
            [twin.twin_id], names, start - timedelta(seconds=horizon_s), start
        )
        for item in series:
            found[f"{twin.twin_id}/{item.field}"] = pd.DataFrame(
                {
                    "time": pd.to_datetime(list(item.time_unix_ns), utc=True),
                    "value": [v for v in item.double_values.values],
                }
            )
    return found


@sim_app.command("calibrate")
def calibrate(
    twin_id: Annotated[str, typer.Argument()],
    parameter: Annotated[
        list[str] | None, typer.Option(help="Parameter to fit (repeatable).")
    ] = None,
    minutes: Annotated[float, typer.Option(help="History window in minutes, ending now.")] = 60.0,
    step_s: StepOption = 1.0,
) -> None:
    """Fit model parameters of a twin to its history.

    Least squares against the stored telemetry; shows the fit quality."""
    end = datetime.now(UTC)
    with open_client() as client, console.status("fitting"):
        response = client.simulation.calibrate(
            twin_id,
            parameter or [],
            start=end - timedelta(minutes=minutes),
            end=end,
            step_s=step_s,
        )
    emit(
        MessageToDict(response, preserving_proto_field_name=True),
        lambda: _calibration_tables(twin_id, response),
    )


def _calibration_tables(twin_id: str, response: simulation_pb2.CalibrateResponse) -> None:
    table = Table(
        title=f"{twin_id}: {'converged' if response.converged else 'not converged'} "
        f"after {response.evaluations} runs"
    )
    for column in ("parameter", "fitted", "± std error", "before", "bounds"):
        table.add_column(column, justify="left" if column == "parameter" else "right")
    for p in response.parameters:
        table.add_row(
            p.name, _fmt(p.value), _fmt(p.std_error), _fmt(p.initial), f"[{p.min:g}, {p.max:g}]"
        )
    console.print(table)
    fits = Table(title="fit quality")
    for column in ("state", "field", "points", "RMSE", "R²"):
        fits.add_column(column)
    for f in response.fits:
        fits.add_row(f.state, f.field, str(f.points), _fmt(f.rmse), _fmt(f.r_squared))
    console.print(fits)
