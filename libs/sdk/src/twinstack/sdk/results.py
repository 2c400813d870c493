"""Simulation results as pandas DataFrames, plots of them, and "apply best scenario"."""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.dataset as ds

from twinstack.api.simulation.v1 import simulation_pb2, sweep_pb2
from twinstack.api.state.v1 import state_pb2

if TYPE_CHECKING:
    from twinstack.sdk import Client


def sweep_dataset(directory: str | Path) -> ds.Dataset:
    """A downloaded sweep's parts (``client.sweeps.download_results``) as one dataset, read
    lazily: filter and project it before loading, for sweeps larger than memory."""
    return ds.dataset(str(directory), format="parquet")


def sweep_frame(directory: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A downloaded sweep's rows (or some of its columns); the provenance is in
    ``frame.attrs["provenance"]``."""
    dataset = sweep_dataset(directory)
    frame = dataset.to_table(columns=columns).to_pandas()
    metadata = dataset.schema.metadata or {}
    frame.attrs["provenance"] = json.loads(metadata.get(b"twinstack.provenance", b"{}"))
    return frame


def scenario_frame(response: simulation_pb2.RunScenarioResponse) -> pd.DataFrame:
    """Trajectories: one row per twin and time, one column per state and output."""
    rows = []
    for twin in response.twins:
        data: dict[str, Any] = {"twin_id": twin.twin_id, "time_s": list(twin.times_s)}
        data |= {series.name: list(series.values) for series in twin.series}
        rows.append(pd.DataFrame(data))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def forecast_frame(response: simulation_pb2.ForecastResponse) -> pd.DataFrame:
    """Fans: one row per twin, observable and time, with the p05..p95 quantiles."""
    rows = []
    for twin in response.twins:
        for fan in twin.fans:
            rows.append(
                pd.DataFrame(
                    {
                        "twin_id": twin.twin_id,
                        "name": fan.name,
                        "time_s": list(twin.times_s),
                        "p05": list(fan.p05),
                        "p25": list(fan.p25),
                        "p50": list(fan.p50),
                        "p75": list(fan.p75),
                        "p95": list(fan.p95),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def best_scenario(frame: pd.DataFrame, kpi: str, *, minimize: bool = True) -> pd.Series:
    """The scenario with the lowest (or highest) value of ``kpi``, NaNs left out."""
    values = frame[kpi].dropna()
    if values.empty:
        raise ValueError(f"no scenario has a value for {kpi!r}")
    return frame.loc[values.idxmin() if minimize else values.idxmax()]


def apply_scenario(
    client: Client, frame: pd.DataFrame, row: pd.Series, *, latest: bool = False
) -> state_pb2.TwinState:
    """Sets the scenario's input values as the twin's desired values, conditionally on the
    state revision its sweep started from (or, with ``latest``, on the current one).

    Only inputs that follow a telemetry field can be desired; raises ApiError (ABORTED) when
    the twin changed since the revision the update is conditional on.
    """
    provenance = frame.attrs.get("provenance", {})
    fields: dict[str, str] = provenance.get("desired_fields", {})
    twin_id = str(row["twin_id"])
    if not twin_id or not fields:
        raise ValueError("only sweeps of twins whose inputs follow telemetry can be applied")
    pinned = {t["twin_id"]: t["state_revision"] for t in provenance["snapshot"]["twins"]}
    revision = client.state.get_state(twin_id).revision if latest else pinned[twin_id]
    values = {field: float(row[name]) for name, field in fields.items()}
    return client.state.set_desired(twin_id, values, expected_revision=revision)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def sweep_figure(frame: pd.DataFrame, kpis: list[str], parameters: list[str]) -> Any:
    """KPI distributions (top row) and each KPI against each swept parameter (sensitivity)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(1, len(kpis))
    rows = 1 + len(parameters)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    sample = frame.sample(min(len(frame), 5000), random_state=0)
    for c, kpi in enumerate(kpis):
        values = frame[kpi].dropna()
        axes[0][c].hist(values, bins=50, color="#3b6ea8")
        axes[0][c].set_title(f"{kpi} ({len(values):,} scenarios)")
        axes[0][c].set_xlabel(kpi)
        axes[0][c].set_ylabel("scenarios")
        for r, parameter in enumerate(parameters, start=1):
            axes[r][c].scatter(sample[parameter], sample[kpi], s=2, alpha=0.4)
            correlation = sample[[parameter, kpi]].corr(method="spearman").iloc[0, 1]
            axes[r][c].set_xlabel(parameter)
            axes[r][c].set_ylabel(kpi)
            axes[r][c].set_title(f"{kpi} vs {parameter} (Spearman {correlation:.2f})", fontsize=8)
    figure.tight_layout(rect=(0, 0, 1, 0.95))  # room for the caller's overall title
    return figure


def forecast_figure(
    response: simulation_pb2.ForecastResponse, history: dict[str, pd.DataFrame]
) -> Any:
    """Each twin's fans (p05-p95, p25-p75, median) after its recent history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fans = forecast_frame(response)
    panels = fans.groupby(["twin_id", "name"], sort=False)
    figure, axes = plt.subplots(
        len(panels), 1, figsize=(9, 2.8 * max(1, len(panels))), squeeze=False
    )
    start = pd.Timestamp(response.start_time.ToDatetime(), tz="UTC")
    for axis, ((twin_id, name), fan) in zip(axes[:, 0], panels, strict=True):
        times = start + pd.to_timedelta(fan["time_s"], unit="s")
        axis.fill_between(times, fan["p05"], fan["p95"], alpha=0.2, label="p05-p95")
        axis.fill_between(times, fan["p25"], fan["p75"], alpha=0.35, label="p25-p75")
        axis.plot(times, fan["p50"], label="median")
        past = history.get(f"{twin_id}/{name}")
        if past is not None and not past.empty:
            axis.plot(past["time"], past["value"], color="black", linewidth=1, label="history")
        axis.set_title(f"{twin_id}: {name}")
        axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    return figure


def summary_figure(sweep: sweep_pb2.Sweep) -> Any:
    """KPI histograms from a sweep's summary (no rows needed: summaries-only sweeps too)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kpis = [k for k in sweep.summary.kpis if k.counts][:6]
    figure, axes = plt.subplots(1, max(1, len(kpis)), figsize=(4 * max(1, len(kpis)), 3.2))
    for axis, kpi in zip(list(getattr(axes, "flat", [axes])), kpis, strict=False):
        edges = list(kpi.bin_edges)
        widths = [high - low for low, high in itertools.pairwise(edges)]
        axis.bar(edges[:-1], list(kpi.counts), width=widths, align="edge")
        axis.axvline(kpi.p50, color="black", linewidth=1)
        axis.set_title(kpi.name, fontsize=9)
        axis.set_ylabel("scenarios")
    figure.tight_layout(rect=(0, 0, 1, 0.92))
    return figure


def write_report(path: Path, title: str, figure: Any, tables: dict[str, pd.DataFrame]) -> None:
    """A PNG of ``figure``, or (for ``.html``) a page with the figure and the tables."""
    image = _png(figure)
    if path.suffix.lower() == ".png":
        path.write_bytes(image)
        return
    sections = "".join(
        f"<h2>{html.escape(name)}</h2>{table.to_html(index=False, float_format='%.4g')}"
        for name, table in tables.items()
    )
    encoded = base64.b64encode(image).decode()
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><img src='data:image/png;base64,{encoded}'>"
        f"{sections}</body></html>"
    )
