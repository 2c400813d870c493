"""A Prometheus (Debian's prometheus package) scraping the local platform, with the shipped
alert rules loaded: what `twinstack up --observe` and the observability tests run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from twinstack.devstack.infra import started_on_free_ports
from twinstack.devstack.processes import ManagedProcess, debian_program, free_port

# The workspace's deploy tree: the rules and dashboards shipped to clusters are the ones run here.
OBSERVABILITY_DIR = Path(__file__).resolve().parents[5] / "deploy/k8s/base/observability"
RULES_FILE = OBSERVABILITY_DIR / "rules.yml"
DASHBOARDS_DIR = OBSERVABILITY_DIR / "dashboards"


def ensure_prometheus() -> str:
    """The path of ``prometheus`` (Debian's package, which brings promtool too)."""
    return debian_program("prometheus", "prometheus")


@dataclass(frozen=True)
class ScrapeTarget:
    """One process to scrape: ``address`` is host:port of its ``/metrics``."""

    address: str
    service: str
    replica: str


class PrometheusServer:
    """A Prometheus on 127.0.0.1 scraping ``targets`` every ``scrape_interval_s``.

    Args:
        data_dir: Its TSDB, config and log.
        targets: What to scrape (job ``twinstack``, labels ``service`` and ``replica``, as the
            PodMonitor's relabelling gives them on Kubernetes).
        rule_files: Alert and recording rule files to evaluate.
        scrape_interval_s: Also the rule evaluation interval. Short locally, so that rates
            over a minute have points within seconds of the start.
    """

    def __init__(
        self,
        data_dir: Path,
        targets: Sequence[ScrapeTarget],
        *,
        rule_files: Sequence[Path] = (RULES_FILE,),
        scrape_interval_s: float = 2.0,
        port: int = 0,
    ) -> None:
        self.data_dir = data_dir
        self.targets = list(targets)
        self.rule_files = list(rule_files)
        self.scrape_interval_s = scrape_interval_s
        self.port = port or free_port()
        self._may_repick = not port
        self.config_path = data_dir / "prometheus.yml"
        self.process = self._process()

    def _process(self) -> ManagedProcess:
        return ManagedProcess(
            "prometheus",
            [
                ensure_prometheus(),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                # Lets the tests reload after rewriting rules (POST /-/reload).
                "--web.enable-lifecycle",
            ],
            log_path=self.data_dir / "prometheus.log",
            ready=self._ready,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def config(self) -> dict[str, Any]:
        interval = f"{self.scrape_interval_s:g}s"
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": "twinstack",
                    "static_configs": [
                        {
                            "targets": [target.address],
                            "labels": {"service": target.service, "replica": target.replica},
                        }
                        for target in self.targets
                    ],
                }
            ],
        }

    def start(self, *, timeout_s: float = 60.0) -> None:
        def start() -> None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
            self.process.start(timeout_s=timeout_s)

        def repick() -> None:
            self.port = free_port()
            self.process = self._process()

        started_on_free_ports(start, self.process.stop, repick if self._may_repick else None)
        self._may_repick = False

    def stop(self) -> None:
        self.process.stop()

    def reload(self) -> None:
        """Rereads the config and rule files."""
        httpx.post(f"{self.url}/-/reload", timeout=10.0).raise_for_status()

    def query(self, expression: str) -> list[Any]:
        """The instant vector (or scalar) ``expression`` evaluates to now.

        Raises:
            ValueError: Prometheus refused the expression (its error says why).
        """
        answer = httpx.get(
            f"{self.url}/api/v1/query", params={"query": expression}, timeout=30.0
        ).json()
        if answer.get("status") != "success":
            raise ValueError(f"{expression}: {answer.get('error', answer)}")
        result = answer["data"]["result"]
        if answer["data"]["resultType"] == "scalar":
            return [result]
        return list(result)

    def rules(self) -> list[dict[str, Any]]:
        """The rule groups loaded, each rule with its health and last evaluation."""
        answer = httpx.get(f"{self.url}/api/v1/rules", timeout=10.0).json()
        return list(answer["data"]["groups"])

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts pending or firing now."""
        answer = httpx.get(f"{self.url}/api/v1/alerts", timeout=10.0).json()
        return list(answer["data"]["alerts"])

    def target_health(self) -> dict[str, str]:
        """Scrape address to ``up``/``down``/``unknown``."""
        answer = httpx.get(f"{self.url}/api/v1/targets", timeout=10.0).json()
        return {
            target["labels"]["instance"]: target["health"]
            for target in answer["data"]["activeTargets"]
        }
