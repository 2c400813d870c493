"""The whole platform as local processes: nats-server, influxd, a Ray cluster (head with the
Jobs API) and the four services."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from twinstack.common.access import DEFAULT_TENANT
from twinstack.common.nats_permissions import DeviceUser, authorization_block
from twinstack.devstack.credentials import LocalIssuer, local_secret
from twinstack.devstack.infra import InfluxServer, NatsCluster, NatsServer
from twinstack.devstack.observe import ScrapeTarget
from twinstack.devstack.processes import ManagedProcess, free_port
from twinstack.devstack.ray_cluster import RayCluster

SERVICES = ("registry", "ingestion", "state", "simulation")
DEFAULT_SERVICE_PORTS = {"registry": 50051, "ingestion": 50052, "state": 50053, "simulation": 50054}
# In the highly available layout, replica n (from 0) of a service listens on its port + 10 n.
HA_REPLICAS = 2
HA_PORT_STRIDE = 10
HA_NATS_NODES = 3
# The NATS user an MQTT client that logs on without a name becomes: a device of the default
# tenant (the listener is on loopback only; docs/devices.md#credentials).
LOCAL_DEVICES_USER = "devices"


def grpc_serving(target: str, service: str = "", *, timeout_s: float = 1.0) -> bool:
    """Whether the gRPC health service at ``target`` reports ``service`` as SERVING."""
    with grpc.insecure_channel(target) as channel:
        # The published stubs of grpc_health declare no methods on HealthStub.
        stub: Any = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


@dataclass
class ServiceProcess:
    """One replica of a twinstack service running as ``python -m twinstack.<service>``."""

    name: str
    port: int
    process: ManagedProcess
    # The service it is a replica of (``name`` is the replica's, e.g. ``state-2``).
    service: str = ""
    # Where Prometheus scrapes it: http://127.0.0.1:<metrics_port>/metrics.
    metrics_port: int = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


class LocalPlatform:
    """Starts and stops the platform; data stays in ``data_dir`` across restarts.

    Args:
        data_dir: Holds the JetStream store, InfluxDB's files and every process's log.
        nats_port: nats-server client port (0: a free one).
        influx_port: influxd HTTP port (0: a free one).
        service_ports: gRPC port of each service (a 0 means a free one).
        service_env: Extra environment for every service. With
            ``TWINSTACK_RAY_JOBS_ADDRESS`` the simulation service uses that Ray cluster;
            without it, the platform starts its own. Authentication is on, with a local
            issuer's keys under ``data_dir/auth`` (``TWINSTACK_AUTH_MODE=disabled`` turns it
            off).
        mqtt_port: nats-server's MQTT listener (0: a free one; None: 1883, or a free one when
            ``nats_port`` is 0); the HA layout's members listen on it and the next two. A
            client without credentials acts as a device of the default tenant.
        device_mapping: The gateway's Sparkplug B and OPC UA mapping (YAML), if any.
        services: Which services to run (all four by default), started in this order.
        ha: The highly available layout: a 3-node NATS cluster (client ports ``nats_port``
            and the next two) with every stream and bucket at 3 replicas, and two replicas of
            each service (the second on its port + 10).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        nats_port: int = 4222,
        influx_port: int = 8086,
        mqtt_port: int | None = None,
        device_mapping: str | None = None,
        service_ports: Mapping[str, int] | None = None,
        service_env: Mapping[str, str] | None = None,
        services: Sequence[str] = SERVICES,
        ha: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.ha = ha
        auth_dir = data_dir / "auth"
        # Each service connects to NATS as its own user, limited to what it needs.
        self.nats_passwords = {
            name: local_secret(auth_dir / f"nats-{name}.password") for name in SERVICES
        }
        self.nats_admin_password = local_secret(auth_dir / "nats-admin.password")
        if mqtt_port is None:
            mqtt_port = 1883 if nats_port else 0
        devices = DeviceUser(
            LOCAL_DEVICES_USER,
            local_secret(auth_dir / "nats-devices.password"),
            DEFAULT_TENANT,
            None,
            sparkplug=True,
        )
        authorization = authorization_block(
            self.nats_passwords, self.nats_admin_password, [devices]
        )
        self.nats: NatsServer | NatsCluster = (
            NatsCluster(
                data_dir / "nats-cluster",
                size=HA_NATS_NODES,
                ports=[nats_port + i if nats_port else 0 for i in range(HA_NATS_NODES)],
                authorization=authorization,
                mqtt_ports=[mqtt_port + i if mqtt_port else 0 for i in range(HA_NATS_NODES)],
                mqtt_no_auth_user=LOCAL_DEVICES_USER,
            )
            if ha
            else NatsServer(
                data_dir / "nats",
                port=nats_port,
                authorization=authorization,
                mqtt_port=mqtt_port,
                mqtt_no_auth_user=LOCAL_DEVICES_USER,
            )
        )
        self.influx = InfluxServer(data_dir / "influxdb", port=influx_port, auth=True)
        given_ports = dict(service_ports or {})
        ports = {**DEFAULT_SERVICE_PORTS, **given_ports}
        ports = {name: ports[name] or free_port() for name in SERVICES}
        # The simulation service asks the registry to resolve graph queries.
        wiring = {"TWINSTACK_REGISTRY_TARGET": f"127.0.0.1:{ports['registry']}"}
        self.issuer = LocalIssuer(auth_dir)
        wiring |= self.issuer.service_env()
        ingestion_env = {"TWINSTACK_MQTT_URL": self.nats.mqtt_url}
        if device_mapping is not None:
            mapping_path = data_dir / "devices.yaml"
            mapping_path.parent.mkdir(parents=True, exist_ok=True)
            mapping_path.write_text(device_mapping)
            ingestion_env["TWINSTACK_DEVICE_MAPPING_FILE"] = str(mapping_path)
        self.ray: RayCluster | None = None
        if "simulation" in services and "TWINSTACK_RAY_JOBS_ADDRESS" not in (service_env or {}):
            self.ray = RayCluster(data_dir / "ray")
            wiring |= {
                "TWINSTACK_RAY_JOBS_ADDRESS": self.ray.jobs_address,
                "TWINSTACK_RAY_AUTH_TOKEN_FILE": str(self.ray.token_path),
            }
        replica_count = HA_REPLICAS if ha else 1
        if ha:
            wiring["TWINSTACK_NATS_REPLICAS"] = str(HA_NATS_NODES)
            # Ports asked to be free (0) are free ones for every replica.
            replica_ports = {
                name: [ports[name]]
                + [
                    ports[name] + HA_PORT_STRIDE * n if given_ports.get(name, 1) else free_port()
                    for n in range(1, replica_count)
                ]
                for name in SERVICES
            }
            wiring["TWINSTACK_REGISTRY_TARGET"] = ",".join(
                f"127.0.0.1:{port}" for port in replica_ports["registry"]
            )
        else:
            replica_ports = {name: [ports[name]] for name in SERVICES}
        self._wiring = wiring
        self._ingestion_env = ingestion_env
        self._extra_env = dict(service_env or {})
        self.replicas: dict[str, list[ServiceProcess]] = {
            name: [self._service(name, n, replica_ports[name][n]) for n in range(replica_count)]
            for name in services
        }
        # The first replica of each service.
        self.services = {name: replicas[0] for name, replicas in self.replicas.items()}

    def service_env(
        self, service: str, replica: str, *, port: int, metrics_port: int
    ) -> dict[str, str]:
        """The environment a replica of ``service`` runs with here: NATS as its own user,
        InfluxDB, the local identity provider, and its ports on 127.0.0.1."""
        return {
            "TWINSTACK_GRPC_HOST": "127.0.0.1",
            "TWINSTACK_GRPC_PORT": str(port),
            "TWINSTACK_METRICS_HOST": "127.0.0.1",
            "TWINSTACK_METRICS_PORT": str(metrics_port),
            "TWINSTACK_NATS_URL": self.nats.url,
            "TWINSTACK_NATS_USER": service,
            "TWINSTACK_NATS_PASSWORD": self.nats_passwords[service],
            "TWINSTACK_INFLUX_URL": self.influx.url,
            "TWINSTACK_INFLUX_USERNAME": self.influx.credentials["username"],
            "TWINSTACK_INFLUX_PASSWORD": self.influx.credentials["password"],
            "TWINSTACK_LOG_FORMAT": "json",
            **({"TWINSTACK_STATE_MEMBER": replica} if service == "state" else {}),
            **self._wiring,
            **(self._ingestion_env if service == "ingestion" else {}),
            **self._extra_env,
        }

    def _service(self, service: str, index: int, port: int) -> ServiceProcess:
        name = service if index == 0 else f"{service}-{index + 1}"
        metrics_port = free_port()
        env = self.service_env(service, name, port=port, metrics_port=metrics_port)
        target = f"127.0.0.1:{port}"
        process = ManagedProcess(
            name,
            [sys.executable, "-m", f"twinstack.{service}"],
            log_path=self.data_dir / "logs" / f"{name}.log",
            env=env,
            ready=lambda: grpc_serving(target),
        )
        return ServiceProcess(name, port, process, service, metrics_port)

    @property
    def all_replicas(self) -> list[ServiceProcess]:
        """Every replica of every service, in start order."""
        return [replica for replicas in self.replicas.values() for replica in replicas]

    def scrape_targets(self) -> list[ScrapeTarget]:
        """Every replica's ``/metrics``, labelled as the PodMonitor labels them on Kubernetes."""
        return [
            ScrapeTarget(f"127.0.0.1:{replica.metrics_port}", replica.service, replica.name)
            for replica in self.all_replicas
        ]

    def targets(self) -> dict[str, str]:
        """Service to the addresses of its replicas (comma-separated, as the SDK takes them)."""
        return {
            name: ",".join(replica.target for replica in replicas)
            for name, replicas in self.replicas.items()
        }

    def start(self, progress: Callable[[str], None] = lambda _: None) -> None:
        """Starts nats-server and influxd, then the services together; stops what started if
        anything fails."""
        try:
            self.issuer.ensure()
            progress(f"nats-server on {self.nats.url}")
            self.nats.start()
            progress(f"influxd on {self.influx.url}")
            self.influx.start()
            if self.ray is not None:
                progress(f"ray head on {self.ray.address} (jobs api {self.ray.jobs_address})")
                try:
                    self.ray.start()
                except (TimeoutError, RuntimeError) as error:
                    # Sweeps wait for Ray; everything else serves without it.
                    progress(f"ray did not start ({error}); sweeps are unavailable until it does")
            # Together, as on a cluster: a service's start is mostly importing its code on one
            # core, so started one after another they would leave the other cores idle.
            for service in self.all_replicas:
                service.process.launch()
            for service in self.all_replicas:
                progress(f"{service.name} on {service.target}")
                service.process.wait_ready(timeout_s=180.0)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stops the services, then influxd and nats-server."""
        for service in reversed(self.all_replicas):
            service.process.stop()
        if self.ray is not None:
            self.ray.stop()
        self.influx.stop()
        self.nats.stop()

    @property
    def nats_admin(self) -> dict[str, str]:
        """``user`` and ``password`` of the NATS admin (for operators' tools and benchmarks)."""
        return {"user": "admin", "password": self.nats_admin_password}

    @property
    def admin_token(self) -> str:
        """A token of the local admin (the default tenant's admin role)."""
        return self.issuer.admin_token

    def client_env(self) -> dict[str, str]:
        """The environment a CLI or SDK user of this platform sets."""
        return {
            **{f"TWINSTACK_{n.upper()}_ADDR": t for n, t in self.targets().items()},
            "TWINSTACK_AUTH_TOKEN": self.admin_token,
            "TWINSTACK_DATA_DIR": str(self.data_dir),
        }

    def endpoints(self) -> dict[str, str]:
        """Name to address of every part of the platform."""
        parts = {
            **self.targets(),
            "nats": self.nats.url,
            "mqtt": self.nats.mqtt_url,
            "influxdb": self.influx.url,
        }
        if self.ray is not None:
            parts["ray jobs api"] = self.ray.jobs_address
        return parts
