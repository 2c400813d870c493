"""The simulation service's gRPC surface, and its start and stop (NATS, InfluxDB, Ray)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import platform
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any

import grpc
import numba
import numpy as np
import ray
from google.protobuf import json_format

from twinstack.api.common.v1 import events_pb2
from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.api.simulation.v1 import simulation_pb2, simulation_pb2_grpc
from twinstack.common.catalog import ModelCatalog
from twinstack.common.errors import (
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    UnavailableError,
)
from twinstack.common.ids import require_twin_id
from twinstack.common.influx import InfluxStore
from twinstack.common.nats import (
    REGISTRY_BUCKET,
    STATE_TWINS_BUCKET,
    Backbone,
    event_subject,
    key_value,
    message_headers,
)
from twinstack.common.times import timestamp_ns
from twinstack.simulation.calibration import calibrate, load_history
from twinstack.simulation.compiler import COMPILER_VERSION, CompiledModel, Integrator
from twinstack.simulation.forecast import SEVERITIES, forecast_twin, influx_points
from twinstack.simulation.kernels import BUILTIN_MODELS
from twinstack.simulation.sampling import Sampler
from twinstack.simulation.settings import SimulationSettings
from twinstack.simulation.snapshot import Snapshot, SnapshotTaker
from twinstack.simulation.sweep import (
    Limits,
    Progress,
    Start,
    SweepPlan,
    SweepSpec,
    Target,
    chunk_inputs,
    execute,
    kpi_matrix,
    plan_sweep,
    results_table,
    summarize,
    write_results,
)

logger = logging.getLogger(__name__)

MIN_CALIBRATION_STEP_S = 1e-3

SERVICE_NAME = simulation_pb2.DESCRIPTOR.services_by_name["SimulationService"].full_name
INTEGRATORS = {
    simulation_pb2.INTEGRATOR_UNSPECIFIED: Integrator.RK4,
    simulation_pb2.INTEGRATOR_RK4: Integrator.RK4,
    simulation_pb2.INTEGRATOR_EULER: Integrator.EULER,
}
SAMPLERS = {
    simulation_pb2.SAMPLER_UNSPECIFIED: Sampler.RANDOM,
    simulation_pb2.SAMPLER_GRID: Sampler.GRID,
    simulation_pb2.SAMPLER_RANDOM: Sampler.RANDOM,
    simulation_pb2.SAMPLER_LATIN_HYPERCUBE: Sampler.LATIN_HYPERCUBE,
    simulation_pb2.SAMPLER_SOBOL: Sampler.SOBOL,
}
SWEEP_ID = re.compile(r"^[0-9a-f]{32}$")
RESULTS_CHUNK_BYTES = 1024 * 1024
DEFAULT_POINTS = 200
MAX_POINTS = 10_000


def _code_version() -> dict[str, str]:
    return {
        "twinstack_simulation": metadata.version("twinstack-simulation"),
        "compiler": COMPILER_VERSION,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "ray": ray.__version__,
        "python": platform.python_version(),
    }


def _integrator(value: int) -> Integrator:
    integrator: Integrator | None = INTEGRATORS.get(value)  # type: ignore[call-overload]
    if integrator is None:
        raise InvalidArgumentError(
            "unknown integrator", [FieldViolation("integrator", "RK4 or EULER")]
        )
    return integrator


def _starts(snapshot: Snapshot, target: Target) -> list[Start]:
    return [
        Start(
            twin.twin_id,
            tuple(twin.initial[name] for name in snapshot.kernel.states),
            tuple(twin.values[name] for name in target.names),
            twin.twin_revision,
            twin.state_revision,
        )
        for twin in snapshot.twins
    ]


def _record_every(steps: int, max_points: int, field: str) -> int:
    if max_points > MAX_POINTS:
        raise InvalidArgumentError(
            "too many points", [FieldViolation(field, f"at most {MAX_POINTS}")]
        )
    return max(1, math.ceil(steps / max(1, (max_points or DEFAULT_POINTS) - 1)))


def _check_trajectory_budget(
    runs: int, steps: int, record_every: int, observables: int, maximum: int
) -> None:
    """Refuses, before anything is allocated, a request whose recorded trajectories (runs x
    recorded points x observables) would hold more than ``maximum`` values."""
    values = runs * (steps // record_every + 2) * max(1, observables)
    if values > maximum:
        raise LimitExceededError(
            f"the trajectories would hold {values} values, more than {maximum} per request",
            limit="TWINSTACK_MAX_TRAJECTORY_VALUES",
            maximum=maximum,
            requested=values,
            violations=[FieldViolation("max_points", "fewer points, samples or twins")],
        )


class SimulationServicer(simulation_pb2_grpc.SimulationServiceServicer):
    def __init__(
        self,
        settings: SimulationSettings,
        snapshots: SnapshotTaker,
        influx: InfluxStore,
        backbone: Backbone,
    ) -> None:
        self._settings = settings
        self._snapshots = snapshots
        self._influx = influx
        self._backbone = backbone
        self._limits = Limits(
            max_scenarios=settings.max_scenarios,
            max_steps=settings.max_steps,
            scenarios_per_task=settings.scenarios_per_task,
            max_scenario_steps=settings.max_scenario_steps,
            max_result_bytes=settings.max_sweep_result_bytes,
        )

    async def ListBuiltinModels(
        self, request: simulation_pb2.ListBuiltinModelsRequest, context: Any
    ) -> simulation_pb2.ListBuiltinModelsResponse:
        return simulation_pb2.ListBuiltinModelsResponse(
            models=[
                simulation_pb2.BuiltinModel(
                    name=model.name,
                    use_case=model.use_case,
                    description=model.description,
                    parameters=[
                        simulation_pb2.BuiltinParameter(name=name, default=d, min=low, max=high)
                        for name, (d, low, high) in model.parameters.items()
                    ],
                    kpis=list(model.kpis),
                )
                for model in BUILTIN_MODELS.values()
            ]
        )

    async def _snapshot(self, selection: simulation_pb2.TwinSelection) -> Snapshot:
        ids = await self._snapshots.twin_ids(selection.twin_ids, selection.query, "twins")
        return await self._snapshots.take(ids)

    async def RunScenario(
        self, request: simulation_pb2.RunScenarioRequest, context: Any
    ) -> simulation_pb2.RunScenarioResponse:
        integrator = _integrator(request.integrator)
        snapshot = await self._snapshot(request.twins)
        target = Target.of_kernel(snapshot.kernel)
        spec = SweepSpec(
            horizon_s=request.horizon_s,
            step_s=request.step_s,
            overrides=dict(request.overrides),
            input_noise=dict(request.input_noise),
            integrator=integrator,
            seed=request.seed,
            thresholds=dict(request.thresholds),
        )
        plan = plan_sweep(spec, target, _starts(snapshot, target), self._limits)
        run = dataclasses.replace(
            plan.run, record_every=_record_every(spec.steps, request.max_points, "max_points")
        )
        _check_trajectory_budget(
            plan.scenario_count,
            spec.steps,
            run.record_every,
            len(target.observables),
            self._settings.max_trajectory_values,
        )
        model = CompiledModel(snapshot.kernel)
        inputs = chunk_inputs(plan, 0, plan.scenario_count)
        parameters = len(snapshot.kernel.parameters)
        outcome = await asyncio.to_thread(
            model.run,
            inputs.initial,
            inputs.values[:parameters],
            inputs.values[parameters:],
            inputs.seeds,
            run,
        )
        names = target.kpi_names(spec.thresholds)
        kpis = kpi_matrix(outcome, snapshot.kernel, spec.thresholds)
        times = (np.arange(outcome.trajectory.shape[0]) * run.record_every * run.dt_s).tolist()
        twins = []
        for index, twin in enumerate(snapshot.twins):
            twins.append(
                simulation_pb2.TwinScenario(
                    twin_id=twin.twin_id,
                    state_revision=twin.state_revision,
                    twin_revision=twin.twin_revision,
                    initial=twin.initial,
                    values=dict(zip(target.names, inputs.values[:, index].tolist(), strict=True)),
                    times_s=times,
                    series=[
                        simulation_pb2.Series(
                            name=name, values=outcome.trajectory[:, o, index].tolist()
                        )
                        for o, name in enumerate(snapshot.kernel.observables)
                    ],
                    kpis={name: float(kpis[row, index]) for row, name in enumerate(names)},
                )
            )
        return simulation_pb2.RunScenarioResponse(
            model_id=snapshot.model.id, kernel=snapshot.kernel.key, twins=twins
        )

    def _sweep_spec(self, request: simulation_pb2.RunSweepRequest) -> SweepSpec:
        sampler = SAMPLERS.get(request.sampler)
        if sampler is None:
            raise InvalidArgumentError(
                "unknown sampler", [FieldViolation("sampler", "GRID, RANDOM, LHS or SOBOL")]
            )
        return SweepSpec(
            horizon_s=request.horizon_s,
            step_s=request.step_s,
            sampler=sampler,
            ranges={n: (r.min, r.max, r.levels) for n, r in request.ranges.items()},
            samples=request.samples,
            replicates=request.replicates or 1,
            overrides=dict(request.overrides),
            input_noise=dict(request.input_noise),
            schedule=[(step.at_s, dict(step.values)) for step in request.input_schedule],
            integrator=_integrator(request.integrator),
            seed=request.seed,
            thresholds=dict(request.thresholds),
        )

    async def _sweep_plan(
        self, request: simulation_pb2.RunSweepRequest
    ) -> tuple[SweepPlan, dict[str, Any]]:
        spec = self._sweep_spec(request)
        selected = bool(request.twins.twin_ids or request.twins.query)
        if request.model:
            builtin = BUILTIN_MODELS.get(request.model)
            violations = []
            if builtin is None:
                known = ", ".join(sorted(BUILTIN_MODELS))
                violations.append(FieldViolation("model", f"unknown; built-in models: {known}"))
            if selected:
                violations.append(
                    FieldViolation("twins", "give a built-in model or twins, not both")
                )
            if builtin is None or violations:
                raise InvalidArgumentError("invalid sweep", violations)
            target = Target.of_builtin(builtin)
            start = Start("", (), tuple(v.default for v in target.variables))
            provenance: dict[str, Any] = {"model": {"builtin": builtin.name}}
            return plan_sweep(spec, target, [start], self._limits), provenance
        if not selected:
            raise InvalidArgumentError(
                "nothing to sweep",
                [FieldViolation("model", "give a built-in model, or twins to fork")],
            )
        snapshot = await self._snapshot(request.twins)
        target = Target.of_kernel(snapshot.kernel)
        provenance = {
            "model": {"model_id": snapshot.model.id, "kernel": snapshot.kernel.key},
            "snapshot": {
                "taken_at": snapshot.taken_at.isoformat(),
                "twins": [
                    {
                        "twin_id": twin.twin_id,
                        "model_id": twin.model_id,
                        "twin_revision": twin.twin_revision,
                        "state_revision": twin.state_revision,
                    }
                    for twin in snapshot.twins
                ],
            },
            # Inputs that follow a telemetry field: what "apply best scenario" sets as desired.
            "desired_fields": {
                item.name: item.telemetry
                for item in snapshot.model.dynamics.inputs
                if item.telemetry
            },
        }
        return plan_sweep(spec, target, _starts(snapshot, target), self._limits), provenance

    async def RunSweep(
        self, request: simulation_pb2.RunSweepRequest, context: Any
    ) -> AsyncIterator[simulation_pb2.RunSweepResponse]:
        started = time.perf_counter()
        plan, provenance = await self._sweep_plan(request)
        sweep_id = uuid.uuid4().hex
        tasks = len(plan.chunks)
        yield simulation_pb2.RunSweepResponse(
            sweep_id=sweep_id, scenarios_total=plan.scenario_count, tasks_total=tasks
        )
        kpis = None
        async for item in execute(plan, tasks_in_flight=self._settings.sweep_tasks_in_flight):
            if isinstance(item, Progress):
                yield simulation_pb2.RunSweepResponse(
                    sweep_id=sweep_id,
                    scenarios_done=item.scenarios_done,
                    scenarios_total=item.scenarios_total,
                    tasks_done=item.tasks_done,
                    tasks_total=item.tasks_total,
                )
            else:
                kpis = item
        assert kpis is not None
        names = plan.target.kpi_names(plan.spec.thresholds)
        provenance = {
            "sweep_id": sweep_id,
            "created_at": datetime.now(UTC).isoformat(),
            **provenance,
            "spec": json_format.MessageToDict(request, preserving_proto_field_name=True),
            "seeds": {
                "seed": request.seed,
                "scenario_seed": "splitmix64 of (seed, scenario index); see the seed column",
            },
            "scenarios": plan.scenario_count,
            "tasks": tasks,
            "code_version": _code_version(),
        }
        provenance_json = json.dumps(provenance, sort_keys=True)
        path = self._settings.results_dir / f"{sweep_id}.parquet"
        # Percentiles over millions of scenarios and the table take seconds: off the event loop.
        summaries = await asyncio.to_thread(summarize, names, kpis)
        table = await asyncio.to_thread(results_table, plan, kpis)
        size = await asyncio.to_thread(write_results, table, path, provenance_json)
        finals = [row for row, name in enumerate(names) if name.endswith(".final")]
        diverged = int((~np.isfinite(kpis[finals])).any(axis=0).sum()) if finals else 0
        result = simulation_pb2.SweepResult(
            sweep_id=sweep_id,
            scenario_count=plan.scenario_count,
            task_count=tasks,
            kpis=[
                simulation_pb2.KpiSummary(
                    name=s.name,
                    mean=s.mean,
                    min=s.min,
                    max=s.max,
                    p05=s.p05,
                    p50=s.p50,
                    p95=s.p95,
                    missing=s.missing,
                )
                for s in summaries
            ],
            results_path=f"sweeps/{sweep_id}/results.parquet",
            results_bytes=size,
            provenance_json=provenance_json,
            diverged=diverged,
            elapsed_s=time.perf_counter() - started,
        )
        logger.info(
            "sweep finished",
            extra={"sweep_id": sweep_id, "scenarios": plan.scenario_count, "tasks": tasks},
        )
        yield simulation_pb2.RunSweepResponse(
            sweep_id=sweep_id,
            scenarios_done=plan.scenario_count,
            scenarios_total=plan.scenario_count,
            tasks_done=tasks,
            tasks_total=tasks,
            result=result,
        )

    async def FetchSweepResults(
        self, request: simulation_pb2.FetchSweepResultsRequest, context: Any
    ) -> AsyncIterator[simulation_pb2.FetchSweepResultsResponse]:
        if not SWEEP_ID.match(request.sweep_id):
            raise InvalidArgumentError(
                "invalid sweep id", [FieldViolation("sweep_id", "32 lowercase hex digits")]
            )
        path = self._settings.results_dir / f"{request.sweep_id}.parquet"
        if not path.exists():
            raise NotFoundError("sweep", request.sweep_id, f"no results for {request.sweep_id}")
        with path.open("rb") as file:
            while chunk := await asyncio.to_thread(file.read, RESULTS_CHUNK_BYTES):
                yield simulation_pb2.FetchSweepResultsResponse(data=chunk)

    async def Forecast(
        self, request: simulation_pb2.ForecastRequest, context: Any
    ) -> simulation_pb2.ForecastResponse:
        samples = request.samples or 1000
        if samples > self._settings.max_forecast_samples:
            raise InvalidArgumentError(
                "too many samples",
                [FieldViolation("samples", f"at most {self._settings.max_forecast_samples}")],
            )
        alert_probability = request.alert_probability or 0.5
        if not 0 < alert_probability <= 1:
            raise InvalidArgumentError(
                "invalid alert probability",
                [FieldViolation("alert_probability", "between 0 (exclusive) and 1")],
            )
        integrator = _integrator(request.integrator)
        snapshot = await self._snapshot(request.twins)
        target = Target.of_kernel(snapshot.kernel)
        spec = SweepSpec(
            horizon_s=request.horizon_s,
            step_s=request.step_s,
            ranges={n: (r.min, r.max, 1) for n, r in request.uncertain.items()},
            samples=samples,
            input_noise=dict(request.input_noise),
            integrator=integrator,
            seed=request.seed,
        )
        try:
            plan = plan_sweep(spec, target, _starts(snapshot, target), self._limits)
        except InvalidArgumentError as error:
            renamed = [
                FieldViolation(v.field.replace("ranges[", "uncertain[", 1), v.description)
                for v in error.violations
            ]
            raise InvalidArgumentError("invalid forecast", renamed) from None
        run = dataclasses.replace(
            plan.run, record_every=_record_every(spec.steps, request.max_points, "max_points")
        )
        # Twins are forecast one after the other: the budget is that of one twin's samples.
        _check_trajectory_budget(
            samples,
            spec.steps,
            run.record_every,
            len(target.observables),
            self._settings.max_trajectory_values,
        )
        model = CompiledModel(snapshot.kernel)
        conditions = snapshot.model.dynamics.conditions
        forecast_id = uuid.uuid4().hex
        started = snapshot.taken_at
        response = simulation_pb2.ForecastResponse(
            forecast_id=forecast_id, model_id=snapshot.model.id
        )
        response.start_time.FromDatetime(started)
        uncertain = {name: (low, high) for name, (low, high, _) in spec.ranges.items()}
        points = []
        events = []
        for index, twin in enumerate(snapshot.twins):
            outlook = await asyncio.to_thread(
                forecast_twin, model, conditions, twin, index, samples, uncertain, run, spec.seed
            )
            points += influx_points(outlook, forecast_id, started, spec.horizon_s)
            risks = []
            for risk in outlook.risks:
                alerted = risk.probability >= alert_probability
                p05, p50, p95 = risk.time_to_failure_s
                risks.append(
                    simulation_pb2.ConditionRisk(
                        condition=risk.condition.name,
                        severity=risk.condition.severity,
                        message=risk.condition.message,
                        probability=risk.probability,
                        time_to_failure_p05_s=p05,
                        time_to_failure_p50_s=p50,
                        time_to_failure_p95_s=p95,
                        alerted=alerted,
                    )
                )
                if alerted:
                    event = events_pb2.PredictedAlertEvent(
                        twin_id=twin.twin_id,
                        model_id=twin.model_id,
                        condition=risk.condition.name,
                        severity=SEVERITIES.get(
                            risk.condition.severity, events_pb2.SEVERITY_UNSPECIFIED
                        ),
                        message=risk.condition.message,
                        probability=risk.probability,
                        time_to_failure_p50_s=p50,
                        horizon_s=spec.horizon_s,
                        forecast_id=forecast_id,
                        state_revision=twin.state_revision,
                    )
                    event.start_time.CopyFrom(response.start_time)
                    events.append(event)
            response.twins.append(
                simulation_pb2.TwinForecast(
                    twin_id=twin.twin_id,
                    state_revision=twin.state_revision,
                    risks=risks,
                    times_s=outlook.times_s.tolist(),
                    fans=[
                        simulation_pb2.Fan(
                            name=name,
                            p05=fan[0].tolist(),
                            p25=fan[1].tolist(),
                            p50=fan[2].tolist(),
                            p75=fan[3].tolist(),
                            p95=fan[4].tolist(),
                        )
                        for name, fan in outlook.fans.items()
                    ],
                )
            )
        await self._influx.write(points)
        for event in events:
            await self._backbone.js.publish(
                event_subject("forecast", "predicted", event.twin_id),
                event.SerializeToString(),
                headers=message_headers(f"{forecast_id}:{event.twin_id}:{event.condition}"),
            )
        response.points_written = len(points)
        return response

    async def Calibrate(
        self, request: simulation_pb2.CalibrateRequest, context: Any
    ) -> simulation_pb2.CalibrateResponse:
        twin_id = require_twin_id(request.twin_id)
        integrator = _integrator(request.integrator)
        step_s = request.step_s or 1.0
        for name in ("start_time", "end_time"):
            if request.HasField(name):
                timestamp_ns(getattr(request, name), name)
        end = (
            request.end_time.ToDatetime(UTC) if request.HasField("end_time") else datetime.now(UTC)
        )
        start = (
            request.start_time.ToDatetime(UTC)
            if request.HasField("start_time")
            else end - timedelta(hours=1)
        )
        violations = []
        if not (math.isfinite(step_s) and step_s >= MIN_CALIBRATION_STEP_S):
            # History is resampled on a grid of whole nanoseconds, InfluxDB windows of at
            # least a millisecond.
            violations.append(
                FieldViolation("step_s", f"at least {MIN_CALIBRATION_STEP_S} s (a millisecond)")
            )
        elif not 3 <= (end - start).total_seconds() / step_s <= self._settings.max_steps:
            violations.append(
                FieldViolation(
                    "start_time",
                    f"the window must hold 3 to {self._settings.max_steps} steps of step_s",
                )
            )
        if violations:
            raise InvalidArgumentError("invalid calibration", violations)
        snapshot = await self._snapshots.take([twin_id], "twin_id")
        model = snapshot.model
        dynamics = model.dynamics
        bounds = {
            p.name: (p.minimum, p.maximum)
            for p in dynamics.parameters
            if p.minimum is not None and p.maximum is not None
        }
        fit = list(dict.fromkeys(request.parameters)) or list(bounds)
        known = {p.name for p in dynamics.parameters}
        for index, name in enumerate(fit):
            if name not in known:
                violations.append(
                    FieldViolation(
                        f"parameters[{index}]", f"no parameter {name!r}: {sorted(known)}"
                    )
                )
            elif name not in bounds:
                violations.append(
                    FieldViolation(
                        f"parameters[{index}]", f"{name!r} needs a min and a max to be fitted"
                    )
                )
        if not fit:
            violations.append(FieldViolation("parameters", "no parameter with min and max to fit"))
        observed_fields = {
            state.name: state.initial
            for state in dynamics.states
            if isinstance(state.initial, str) and state.initial in model.telemetry
        }
        driven_fields = {item.name: item.telemetry for item in dynamics.inputs if item.telemetry}
        if not observed_fields:
            violations.append(
                FieldViolation(
                    "twin_id",
                    f"{model.id} has no state whose initial value is a telemetry field, so "
                    "there is nothing to compare with",
                )
            )
        if violations:
            raise InvalidArgumentError("invalid calibration", violations)
        step_ns = round(step_s * 1e9)
        steps = int((end - start).total_seconds() / step_s)
        start_ns = int(start.timestamp() * 1e9)
        history = await load_history(
            self._influx,
            twin_id,
            sorted(set(observed_fields.values()) | set(driven_fields.values())),
            start_ns=start_ns,
            steps=steps,
            step_ns=step_ns,
        )
        if not any(np.isfinite(history[f]).any() for f in observed_fields.values()):
            raise FailedPreconditionError(
                f"no history of {twin_id} in the window",
                [
                    FieldViolation(
                        "start_time", f"no values of {sorted(set(observed_fields.values()))}"
                    )
                ],
                violation_type="NO_HISTORY",
            )
        twin = snapshot.twins[0]
        result = await asyncio.to_thread(
            calibrate,
            CompiledModel(snapshot.kernel),
            twin.values,
            twin.initial,
            fit,
            bounds,
            {state: (f, history[f]) for state, f in observed_fields.items()},
            {name: history[f] for name, f in driven_fields.items()},
            step_s,
            integrator,
        )
        return simulation_pb2.CalibrateResponse(
            twin_id=twin_id,
            parameters=[
                simulation_pb2.FittedParameter(
                    name=name,
                    value=float(result.values[i]),
                    initial=float(result.initial[i]),
                    std_error=float(result.std_errors[i]),
                    min=result.bounds[i][0],
                    max=result.bounds[i][1],
                )
                for i, name in enumerate(result.names)
            ],
            fits=[
                simulation_pb2.FieldFit(
                    state=f.state,
                    field=f.field,
                    points=f.points,
                    rmse=f.rmse,
                    r_squared=f.r_squared,
                )
                for f in result.fits
            ],
            converged=result.converged,
            message=result.message,
            evaluations=result.evaluations,
        )


class SimulationApp:
    """The simulation service as the server bootstrap runs it."""

    service_names: Sequence[str] = (SERVICE_NAME,)

    def __init__(self, settings: SimulationSettings) -> None:
        self._settings = settings
        self._owns_ray = False
        self._backbone: Backbone | None = None
        self._catalog: ModelCatalog | None = None
        self._influx: InfluxStore | None = None
        self._registry_channel: grpc.aio.Channel | None = None
        self._servicer: SimulationServicer | None = None

    async def start(self) -> None:
        settings = self._settings
        self._backbone = backbone = await Backbone.connect(settings, "twinstack-simulation")
        registry_bucket = await key_value(backbone.js, REGISTRY_BUCKET)
        self._catalog = ModelCatalog(registry_bucket)
        await self._catalog.start()
        self._influx = InfluxStore.from_settings(settings)
        await self._influx.connect()
        self._registry_channel = grpc.aio.insecure_channel(settings.registry_target)
        registry = registry_pb2_grpc.RegistryServiceStub(self._registry_channel)
        metadata_ = (
            (("authorization", f"Bearer {settings.auth_token.get_secret_value()}"),)
            if settings.auth_token
            else ()
        )

        async def query(text: str, limit: int) -> list[str]:
            ids: list[str] = []
            token = ""
            while len(ids) < limit:
                try:
                    page = await registry.QueryTwins(
                        registry_pb2.QueryTwinsRequest(
                            query=text, page={"page_size": 1000, "page_token": token}
                        ),
                        metadata=metadata_,
                        timeout=30,
                    )
                except grpc.aio.AioRpcError as error:
                    if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                        raise InvalidArgumentError(
                            "invalid twin query",
                            [FieldViolation("twins.query", error.details() or "invalid query")],
                        ) from None
                    raise UnavailableError(
                        f"the registry did not answer the twin query ({error.code().name})"
                    ) from None
                ids += [twin.id for twin in page.twins]
                token = page.page.next_page_token
                if not token:
                    break
            return ids

        snapshots = SnapshotTaker(
            registry_bucket,
            await key_value(backbone.js, STATE_TWINS_BUCKET),
            self._catalog,
            query,
            attempts=settings.snapshot_attempts,
            max_twins=settings.max_snapshot_twins,
        )
        self._servicer = SimulationServicer(settings, snapshots, self._influx, backbone)
        if not ray.is_initialized():
            address = settings.ray_address
            ray.init(
                address=address,
                num_cpus=None if address else settings.ray_num_cpus,
                include_dashboard=False,
                log_to_driver=False,
            )
            self._owns_ray = True
            logger.info("ray connected", extra={"ray_address": address or "local"})

    def register(self, server: grpc.aio.Server) -> None:
        assert self._servicer is not None, "start() first"
        simulation_pb2_grpc.add_SimulationServiceServicer_to_server(self._servicer, server)

    async def stop(self) -> None:
        if self._catalog is not None:
            await self._catalog.stop()
        if self._registry_channel is not None:
            await self._registry_channel.close()
        if self._influx is not None:
            await self._influx.close()
        if self._backbone is not None:
            await self._backbone.close()
        if self._owns_ray:
            ray.shutdown()
