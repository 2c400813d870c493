"""A real local Ray cluster: a head with the Jobs API, and worker nodes beside it.

Each node is ``ray start --block`` (the head, or a node joining it), so the cluster works as one
on Kubernetes does: sweep drivers are submitted as Ray jobs to the head, and a node can be lost
(all of its processes killed) or the head restarted. Token authentication is on: the token is
generated once per data directory, and :meth:`RayCluster.client_env` gives what a client needs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from twinstack.devstack.processes import ManagedProcess, free_port, installed_program, wait_until

START_ATTEMPTS = 3


def _dig(value: object, *keys: str) -> object:
    """``value[k1][k2]...``, or None where a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def ray_binary() -> str:
    """The ``ray`` script installed beside this Python, else on PATH."""
    return installed_program("ray", "ray[default]")


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: fields follow the last ")".
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and all of its descendants (Ray's workers start their own sessions, so a
    process group does not hold them all)."""
    children = _children()
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, []))
    return tree


def kill_tree(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    for member in process_tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, sig)


@dataclass
class RayNode:
    process: ManagedProcess
    num_cpus: int


class RayCluster:
    """A local Ray cluster.

    Args:
        data_dir: Logs and the auth token.
        num_cpus: CPUs of the head (None: all of this machine's).
        port: The head's GCS port (0: a free one).
        dashboard_port: The Jobs API / dashboard port (0: a free one).
        object_store_bytes: Object store size per node (None: Ray's default, 30% of memory).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        num_cpus: int | None = None,
        port: int = 0,
        dashboard_port: int = 0,
        object_store_bytes: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.num_cpus = num_cpus or os.cpu_count() or 1
        self.port = port or free_port()
        self.dashboard_port = dashboard_port or free_port()
        self.object_store_bytes = object_store_bytes
        self.token_path = data_dir / "auth_token"
        # Ray's sockets live under its temp dir, and socket paths are short: not under data_dir.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ts-ray-"))
        self.head: RayNode | None = None
        self.nodes: list[RayNode] = []

    @property
    def address(self) -> str:
        """The GCS address (``ray.init(address=...)``, ``ray start --address``)."""
        return f"127.0.0.1:{self.port}"

    @property
    def jobs_address(self) -> str:
        """The Jobs API (``JobSubmissionClient``, ``TWINSTACK_RAY_JOBS_ADDRESS``)."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    def client_env(self) -> dict[str, str]:
        """What a Ray client (the simulation service, a test) needs to be let in."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}

    def _token(self) -> str:
        if not self.token_path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.token_path.write_text(secrets.token_hex(32))
            self.token_path.chmod(0o600)
        return self.token_path.read_text().strip()

    def _node_arguments(self, num_cpus: int) -> list[str]:
        arguments = [
            "--block",
            "--disable-usage-stats",
            "--node-ip-address",
            "127.0.0.1",
            "--num-cpus",
            str(num_cpus),
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--metrics-export-port",
            str(free_port()),
        ]
        if self.object_store_bytes:
            arguments += ["--object-store-memory", str(self.object_store_bytes)]
        return arguments

    def _api(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(
                f"{self.jobs_address}{path}",
                headers={"Authorization": f"Bearer {self._token()}"},
                timeout=2.0,
            )
        except httpx.HTTPError:
            return None

    def jobs_api_ready(self) -> bool:
        response = self._api("/api/version")
        return response is not None and response.status_code == 200

    def alive_nodes(self) -> int:
        """Nodes the cluster sees as alive (0 while the head does not answer)."""
        response = self._api("/api/v0/nodes?detail=false&limit=100")
        if response is None or response.status_code != 200:
            return 0
        # The dashboard answers before its state API is up: with a page that is not JSON, or
        # JSON of another shape. Either is "not ready yet", never a crash of the start.
        try:
            body = response.json()
        except ValueError:
            return 0
        nodes = _dig(body, "data", "result", "result")
        if not isinstance(nodes, list):
            return 0
        return sum(1 for node in nodes if isinstance(node, dict) and node.get("state") == "ALIVE")

    def start(self, *, timeout_s: float = 120.0) -> None:
        """Starts the head; a start that times out or fails is retried (a fresh machine's first
        start, or one right after another cluster stopped, can be slow)."""
        self._token()
        for attempt in range(1, START_ATTEMPTS + 1):
            head = ManagedProcess(
                "ray-head",
                [
                    ray_binary(),
                    "start",
                    "--head",
                    "--port",
                    str(self.port),
                    "--dashboard-host",
                    "127.0.0.1",
                    "--dashboard-port",
                    str(self.dashboard_port),
                    "--include-dashboard",
                    "true",
                    "--ray-client-server-port",
                    str(free_port()),
                    "--temp-dir",
                    str(self.temp_dir),
                    *self._node_arguments(self.num_cpus),
                ],
                log_path=self.data_dir / "logs" / "ray-head.log",
                env=self.client_env(),
                # Ready once jobs are accepted and the head's own node can run them.
                ready=lambda: self.jobs_api_ready() and self.alive_nodes() >= 1,
            )
            try:
                head.start(timeout_s=timeout_s)
            except (TimeoutError, RuntimeError):
                if head.pid is not None:
                    kill_tree(head.pid)
                head.kill()
                if attempt == START_ATTEMPTS:
                    raise
                continue
            self.head = RayNode(head, self.num_cpus)
            return

    def add_node(self, num_cpus: int = 1, *, timeout_s: float = 120.0) -> int:
        """Starts a worker node; returns its index (for :meth:`kill_node`)."""
        expected = self.alive_nodes() + 1
        index = len(self.nodes)
        node = ManagedProcess(
            f"ray-node-{index}",
            [ray_binary(), "start", "--address", self.address, *self._node_arguments(num_cpus)],
            log_path=self.data_dir / "logs" / f"ray-node-{index}.log",
            env=self.client_env(),
        )
        node.launch()
        self.nodes.append(RayNode(node, num_cpus))
        wait_until(
            lambda: self.alive_nodes() >= expected, timeout_s=timeout_s, what="ray node joined"
        )
        return index

    def kill_node(self, index: int) -> None:
        """SIGKILL every process of a worker node (its raylet, its workers): a lost node."""
        node = self.nodes[index]
        if node.process.pid is not None:
            kill_tree(node.process.pid)
        node.process.kill()

    def kill_head(self) -> None:
        """SIGKILL every process of the head: the head's pod lost, drivers with it."""
        if self.head is not None and self.head.process.pid is not None:
            kill_tree(self.head.process.pid)
            self.head.process.kill()
        self.head = None

    def stop(self) -> None:
        """Stops every node, then the head."""
        for node in [*self.nodes, *([self.head] if self.head else [])]:
            pid = node.process.pid
            if pid is None:
                continue
            tree = process_tree(pid)
            node.process.stop(timeout_s=10.0)
            for member in tree:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member, signal.SIGKILL)
        self.nodes.clear()
        self.head = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)
