"""Sweeps as durable jobs against real nats-server and a real two-node local Ray cluster: a sweep
outlives its client, the simulation replica that took it, its driver and a lost Ray node, and
its rows and summary are those of an undisturbed run (no chunk missing, none counted twice)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from twinstack.api.access.v1 import access_pb2, access_pb2_grpc
from twinstack.api.common.v1 import types_pb2
from twinstack.api.simulation.v1 import simulation_pb2, sweep_pb2, sweep_pb2_grpc
from twinstack.devstack import LocalIssuer, free_port
from twinstack.devstack.platform import grpc_serving
from twinstack.devstack.processes import ManagedProcess
from twinstack.devstack.ray_cluster import RayCluster, process_tree
from twinstack.registry.app import RegistryApp
from twinstack.registry.settings import RegistrySettings
from twinstack.simulation.app import SimulationApp
from twinstack.simulation.settings import SimulationSettings

SWEEP_SERVICE = sweep_pb2.DESCRIPTOR.services_by_name["SweepService"].full_name
# About a minute of work on two CPUs, in 16 chunks: long enough to disturb mid-way.
SPEC = sweep_pb2.SweepSpec(
    model="pump_thermal",
    sampler=simulation_pb2.SAMPLER_SOBOL,
    ranges={
        "load": simulation_pb2.ParameterRange(min=0.2, max=1.0),
        "ambient_c": simulation_pb2.ParameterRange(min=10.0, max=35.0),
    },
    samples=16_000,
    horizon_s=100_000.0,
    step_s=1.0,
    seed=21,
)


def processes(marker: str) -> list[int]:
    """Pids whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if marker in command:
                found.append(int(entry.name))
    return found


Metadata: TypeAlias = tuple[tuple[str, str], ...]
Replica: TypeAlias = (
    "Callable[..., contextlib.AbstractAsyncContextManager[sweep_pb2_grpc.SweepServiceAsyncStub]]"
)


@pytest.fixture
def replica(
    infra_settings: dict[str, Any], ray_settings: dict[str, Any], serve_app: Any, eventually: Any
) -> Replica:
    """Starts a simulation replica (all replicas share NATS and the Ray cluster); keyword
    arguments override its settings."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[sweep_pb2_grpc.SweepServiceAsyncStub]:
        settings = SimulationSettings(
            **{
                **infra_settings,
                **ray_settings,
                "scenarios_per_task": 1000,
                "sweep_schedule_interval_s": 1.0,
                "sweep_lease_interval_s": 0.5,
                "sweep_lease_timeout_s": 5.0,
                "sweep_driver_start_timeout_s": 60.0,
                **overrides,
            }
        )
        async with serve_app(settings, SimulationApp(settings)) as channel:
            health: Any = health_pb2_grpc.HealthStub(channel)

            async def serving() -> bool:
                check = health_pb2.HealthCheckRequest(service=SWEEP_SERVICE)
                response = await health.Check(check, timeout=5)
                return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

            await eventually(serving, timeout_s=60)
            yield sweep_pb2_grpc.SweepServiceStub(channel)

    return start


async def finished(
    sweeps: sweep_pb2_grpc.SweepServiceAsyncStub, sweep_id: str, metadata: Metadata = ()
) -> sweep_pb2.Sweep:
    request = sweep_pb2.WatchSweepRequest(sweep_id=sweep_id)
    last = None
    async for message in sweeps.WatchSweep(request, timeout=300, metadata=metadata):
        last = message.sweep
    assert last is not None
    return last


async def rows(
    sweeps: sweep_pb2_grpc.SweepServiceAsyncStub,
    sweep: sweep_pb2.Sweep,
    directory: Path,
    metadata: Metadata = (),
) -> pa.Table:
    await asyncio.to_thread(directory.mkdir, parents=True)
    parts: dict[str, bytearray] = {}
    request = sweep_pb2.ReadSweepResultsRequest(sweep_id=sweep.sweep_id)
    async for piece in sweeps.ReadSweepResults(request, timeout=120, metadata=metadata):
        parts.setdefault(piece.part, bytearray()).extend(piece.data)
    for name, data in parts.items():
        await asyncio.to_thread((directory / name).write_bytes, bytes(data))
    table: pa.Table = await asyncio.to_thread(pq.read_table, directory)
    return table.sort_by("scenario")


@contextlib.contextmanager
def replica_process(
    infra_settings: dict[str, Any], ray_env: dict[str, str], log_dir: Path
) -> Iterator[ManagedProcess]:
    """A simulation replica as its own process (so that it can be SIGKILLed)."""
    port = free_port()
    env = {
        "TWINSTACK_GRPC_HOST": "127.0.0.1",
        "TWINSTACK_GRPC_PORT": str(port),
        "TWINSTACK_METRICS_PORT": "0",
        "TWINSTACK_NATS_URL": infra_settings["nats_url"],
        "TWINSTACK_INFLUX_URL": infra_settings["influx_url"],
        "TWINSTACK_INFLUX_DATABASE": infra_settings["influx_database"],
        "TWINSTACK_AUTH_MODE": infra_settings["auth_mode"],
        "TWINSTACK_SCENARIOS_PER_TASK": "1000",
        "TWINSTACK_SWEEP_SCHEDULE_INTERVAL_S": "1.0",
        **ray_env,
    }
    process = ManagedProcess(
        "simulation",
        [sys.executable, "-m", "twinstack.simulation"],
        log_path=log_dir / "simulation.log",
        env=env,
        ready=lambda: grpc_serving(f"127.0.0.1:{port}", SWEEP_SERVICE),
    )
    process.port = port  # type: ignore[attr-defined]
    process.start(timeout_s=120)
    try:
        yield process
    finally:
        process.stop()


async def test_a_sweep_outlives_its_client_its_replica_and_its_driver(
    replica: Replica,
    infra_settings: dict[str, Any],
    ray_env: dict[str, str],
    eventually: Any,
    tmp_path: Path,
) -> None:
    with replica_process(infra_settings, ray_env, tmp_path) as process:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{process.port}") as channel:  # type: ignore[attr-defined]
            first = sweep_pb2_grpc.SweepServiceStub(channel)
            submit = sweep_pb2.SubmitSweepRequest(
                spec=SPEC, request_id="nightly-7", submitter="data"
            )
            submitted = await first.SubmitSweep(submit, timeout=30)
            assert submitted.created
            again = await first.SubmitSweep(submit, timeout=30)
            assert not again.created, "the same request id is the same sweep"
            assert again.sweep.sweep_id == submitted.sweep.sweep_id
            sweep_id = submitted.sweep.sweep_id
            # The client watches a little, then goes away; the replica that took it is killed.
            async for message in first.WatchSweep(
                sweep_pb2.WatchSweepRequest(sweep_id=sweep_id), timeout=120
            ):
                if message.sweep.chunks_done >= 2:
                    break
        process.kill()
    driver = f"twinstack.simulation.driver {sweep_id}"
    victims = await eventually(lambda: asyncio.to_thread(processes, driver), timeout_s=30)
    for pid in victims:
        os.kill(pid, signal.SIGKILL)

    async with replica() as second:
        sweep = await finished(second, sweep_id)
        assert sweep.state == sweep_pb2.SWEEP_STATE_SUCCEEDED, sweep.failure_reason
        assert sweep.attempts >= 2, "a second driver resumed the sweep"
        assert sweep.chunks_done == sweep.chunks_total == 16
        assert sweep.scenarios_done == 16_000
        disturbed = await rows(second, sweep, tmp_path / "disturbed")

        undisturbed = await finished(
            second,
            (
                await second.SubmitSweep(sweep_pb2.SubmitSweepRequest(spec=SPEC), timeout=30)
            ).sweep.sweep_id,
        )
        assert undisturbed.attempts == 1
        reference = await rows(second, undisturbed, tmp_path / "undisturbed")
        assert disturbed.num_rows == 16_000
        assert disturbed.column("scenario").to_pylist() == list(range(16_000))
        assert disturbed.drop(["twin_id"]).equals(reference.drop(["twin_id"]))
        assert sweep.summary == undisturbed.summary

        listed = await second.ListSweeps(sweep_pb2.ListSweepsRequest(submitter="data"), timeout=10)
        assert [s.sweep_id for s in listed.sweeps] == [sweep_id]


async def test_a_sweep_survives_a_lost_ray_node(
    replica: Replica, ray_cluster: RayCluster, eventually: Any, tmp_path: Path
) -> None:
    node = ray_cluster.add_node(1)
    async with replica() as sweeps:
        reference_sweep = await finished(
            sweeps,
            (
                await sweeps.SubmitSweep(sweep_pb2.SubmitSweepRequest(spec=SPEC), timeout=30)
            ).sweep.sweep_id,
        )
        reference = await rows(sweeps, reference_sweep, tmp_path / "reference")

        submitted = await sweeps.SubmitSweep(sweep_pb2.SubmitSweepRequest(spec=SPEC), timeout=30)

        def chunks_on_the_node() -> list[int]:
            process = ray_cluster.nodes[node].process
            tree = set(process_tree(process.pid)) if process.pid else set()
            return [pid for pid in processes("ray::run_chunk") if pid in tree]

        await eventually(lambda: asyncio.to_thread(chunks_on_the_node), timeout_s=60)
        ray_cluster.kill_node(node)
        sweep = await finished(sweeps, submitted.sweep.sweep_id)
        assert sweep.state == sweep_pb2.SWEEP_STATE_SUCCEEDED, sweep.failure_reason
        assert sweep.chunks_done == sweep.chunks_total
        table = await rows(sweeps, sweep, tmp_path / "disturbed")
        assert table.drop(["twin_id"]).equals(reference.drop(["twin_id"]))
        assert sweep.summary == reference_sweep.summary


async def test_a_sweep_resumes_after_the_ray_head_restarts(
    infra_settings: dict[str, Any],
    serve_app: Any,
    eventually: Any,
    tmp_path: Path,
) -> None:
    """The head's pod lost (its drivers with it) and back: the sweep is resumed from the ledger."""
    cluster = RayCluster(tmp_path / "ray", num_cpus=2, object_store_bytes=256 * 2**20)
    cluster.start()
    try:
        settings = SimulationSettings(
            **infra_settings,
            ray_jobs_address=cluster.jobs_address,
            ray_auth_token_file=cluster.token_path,
            scenarios_per_task=1000,
            sweep_schedule_interval_s=1.0,
            sweep_lease_interval_s=0.5,
            sweep_lease_timeout_s=5.0,
        )
        async with serve_app(settings, SimulationApp(settings)) as channel:
            sweeps = sweep_pb2_grpc.SweepServiceStub(channel)
            health: Any = health_pb2_grpc.HealthStub(channel)

            async def sweep_service_status() -> int:
                check = health_pb2.HealthCheckRequest(service=SWEEP_SERVICE)
                return int((await health.Check(check, timeout=5)).status)

            serving = health_pb2.HealthCheckResponse.SERVING
            await eventually(sweep_service_status, lambda s: s == serving, timeout_s=60)
            submitted = await sweeps.SubmitSweep(
                sweep_pb2.SubmitSweepRequest(spec=SPEC), timeout=30
            )
            sweep_id = submitted.sweep.sweep_id
            async for message in sweeps.WatchSweep(
                sweep_pb2.WatchSweepRequest(sweep_id=sweep_id), timeout=120
            ):
                if message.sweep.chunks_done >= 2:
                    break
            await asyncio.to_thread(cluster.kill_head)
            # Without Ray, only the sweep service stops serving; submits say when to retry.
            await eventually(sweep_service_status, lambda s: s != serving, timeout_s=30)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await sweeps.SubmitSweep(sweep_pb2.SubmitSweepRequest(spec=SPEC), timeout=10)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            got = await sweeps.GetSweep(sweep_pb2.GetSweepRequest(sweep_id=sweep_id), timeout=10)
            assert got.sweep.state == sweep_pb2.SWEEP_STATE_RUNNING
            await asyncio.to_thread(cluster.start)
            sweep = await finished(sweeps, sweep_id)
            assert sweep.state == sweep_pb2.SWEEP_STATE_SUCCEEDED, sweep.failure_reason
            assert sweep.attempts >= 2
            assert sweep.chunks_done == sweep.chunks_total == 16
            assert sweep.scenarios_done == 16_000
            table = await rows(sweeps, sweep, tmp_path / "rows")
            assert table.column("scenario").to_pylist() == list(range(16_000))
    finally:
        await asyncio.to_thread(cluster.stop)


async def test_bad_sweep_requests_are_refused_before_anything_is_queued(
    replica: Replica, details_of: Any
) -> None:
    async with replica() as sweeps:
        over_budget = sweep_pb2.SweepSpec(
            model="pump_thermal",
            ranges={"load": simulation_pb2.ParameterRange(min=0.0, max=1.0)},
            samples=4_000_000_000,
            horizon_s=10.0,
            step_s=1.0,
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await sweeps.SubmitSweep(sweep_pb2.SubmitSweepRequest(spec=over_budget), timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in details_of(raised.value)[1].field_violations] == ["samples"]
        for request in (
            sweep_pb2.SubmitSweepRequest(spec=SPEC, submitter="no spaces allowed"),
            sweep_pb2.SubmitSweepRequest(spec=SPEC, request_id="x" * 129),
            sweep_pb2.SubmitSweepRequest(
                spec=sweep_pb2.SweepSpec(
                    model="pump_thermal",
                    horizon_s=10.0,
                    step_s=1.0,
                    objective=sweep_pb2.Objective(kpi="nope"),
                )
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await sweeps.SubmitSweep(request, timeout=10)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        lookups: list[tuple[Any, Any]] = [
            (sweeps.GetSweep, sweep_pb2.GetSweepRequest(sweep_id="f" * 32)),
            (sweeps.CancelSweep, sweep_pb2.CancelSweepRequest(sweep_id="f" * 32)),
        ]
        for method, request in lookups:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await method(request, timeout=10)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await sweeps.ListSweeps(
                sweep_pb2.ListSweepsRequest(page=types_pb2.PageRequest(page_token="garbage")),
                timeout=10,
            )
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        listed = await sweeps.ListSweeps(sweep_pb2.ListSweepsRequest(), timeout=10)
        assert list(listed.sweeps) == [], "nothing was queued"


async def test_a_tenant_queues_at_most_its_sweeps_and_scenario_steps(
    replica: Replica, details_of: Any, eventually: Any
) -> None:
    small = sweep_pb2.SweepSpec()
    small.CopyFrom(SPEC)
    small.samples = 10
    small.horizon_s = 100.0
    # SPEC is 1.6e9 scenario-steps: one fits the tenant's 2e9, two do not. One sweep runs at a
    # time, so the others stay queued and only the first starts a Ray job.
    async with replica(
        tenant_max_active_sweeps=2,
        tenant_max_active_scenario_steps=2 * 10**9,
        max_running_sweeps=1,
    ) as sweeps:

        async def submit(spec: sweep_pb2.SweepSpec, request_id: str = "") -> sweep_pb2.Sweep:
            request = sweep_pb2.SubmitSweepRequest(spec=spec, request_id=request_id)
            return (await sweeps.SubmitSweep(request, timeout=60)).sweep

        async def refused(spec: sweep_pb2.SweepSpec) -> dict[str, str]:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await submit(spec)
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            (info,) = [d for d in details_of(raised.value) if d.DESCRIPTOR.name == "ErrorInfo"]
            return dict(info.metadata)

        async def cancel(sweep: sweep_pb2.Sweep) -> None:
            await sweeps.CancelSweep(sweep_pb2.CancelSweepRequest(sweep_id=sweep.sweep_id))

        big = await submit(SPEC, request_id="big-1")
        steps = await refused(SPEC)
        assert steps["quota"] == "TWINSTACK_TENANT_MAX_ACTIVE_SCENARIO_STEPS"
        assert steps["requested"] == "3.2e+09"
        second = await submit(small)
        count = await refused(small)
        assert count["quota"] == "TWINSTACK_TENANT_MAX_ACTIVE_SWEEPS"
        again = await sweeps.SubmitSweep(
            sweep_pb2.SubmitSweepRequest(spec=SPEC, request_id="big-1"), timeout=60
        )
        assert (again.created, again.sweep.sweep_id) == (False, big.sweep_id), "a retry"
        listed = await sweeps.ListSweeps(sweep_pb2.ListSweepsRequest(), timeout=10)
        assert {s.sweep_id for s in listed.sweeps} == {big.sweep_id, second.sweep_id}

        await cancel(second)

        async def resubmitted() -> sweep_pb2.Sweep | None:
            try:
                return await submit(small)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                return None

        # An ended sweep leaves the quota as soon as the replica sees it end.
        third = await eventually(resubmitted, timeout_s=30)
        for sweep in (third, big):
            await cancel(sweep)


async def test_a_tenants_sweep_is_stored_under_its_tenant_and_hidden_from_the_others(
    replica: Replica, infra_settings: dict[str, Any], serve_app: Any, tmp_path: Path
) -> None:
    issuer = LocalIssuer(tmp_path / "auth").ensure()
    secured = {**infra_settings, **issuer.service_settings()}
    registry_settings = RegistrySettings(**secured)
    platform_admin = (("authorization", f"Bearer {issuer.admin_token}"),)
    async with serve_app(registry_settings, RegistryApp(registry_settings)) as registry:
        created = await access_pb2_grpc.AccessServiceStub(registry).CreateTenant(
            access_pb2.CreateTenantRequest(
                tenant=access_pb2.Tenant(name="sweep-tenant"), create_admin_key=True
            ),
            metadata=platform_admin,
            timeout=30,
        )
        tenant_admin = (("authorization", f"Bearer {created.admin_key_secret}"),)
        small = sweep_pb2.SweepSpec()
        small.CopyFrom(SPEC)
        small.samples = 2000
        small.horizon_s = 1000.0
        async with replica(**issuer.service_settings()) as sweeps:
            submit = sweep_pb2.SubmitSweepRequest(spec=small, request_id="tenant-run-1")
            submitted = await sweeps.SubmitSweep(submit, metadata=tenant_admin, timeout=60)
            sweep = await finished(sweeps, submitted.sweep.sweep_id, tenant_admin)
            assert sweep.state == sweep_pb2.SWEEP_STATE_SUCCEEDED, sweep.failure_reason
            assert "/tenants/sweep-tenant/sweeps/" in sweep.results.uri
            table = await rows(sweeps, sweep, tmp_path / "tenant", tenant_admin)
            assert table.num_rows == 2000

            # The default tenant's admin cannot see, read or cancel it, nor claim its request id.
            calls: list[Any] = [
                sweeps.GetSweep(
                    sweep_pb2.GetSweepRequest(sweep_id=sweep.sweep_id), metadata=platform_admin
                ),
                sweeps.CancelSweep(
                    sweep_pb2.CancelSweepRequest(sweep_id=sweep.sweep_id), metadata=platform_admin
                ),
            ]
            for call in calls:
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await call
                assert raised.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.aio.AioRpcError) as unread:
                await rows(sweeps, sweep, tmp_path / "default", platform_admin)
            assert unread.value.code() == grpc.StatusCode.NOT_FOUND
            listed = await sweeps.ListSweeps(
                sweep_pb2.ListSweepsRequest(), metadata=platform_admin, timeout=30
            )
            assert sweep.sweep_id not in {s.sweep_id for s in listed.sweeps}
            own = await sweeps.ListSweeps(
                sweep_pb2.ListSweepsRequest(), metadata=tenant_admin, timeout=30
            )
            assert [s.sweep_id for s in own.sweeps] == [sweep.sweep_id]
            validated = sweep_pb2.SubmitSweepRequest(spec=small, request_id="tenant-run-1")
            validated.spec.samples = 10
            other = await sweeps.SubmitSweep(validated, metadata=platform_admin, timeout=60)
            assert other.created, "request ids are claimed per tenant"
            await sweeps.CancelSweep(
                sweep_pb2.CancelSweepRequest(sweep_id=other.sweep.sweep_id),
                metadata=platform_admin,
                timeout=30,
            )
