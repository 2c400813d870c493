"""Runs twinstack's infrastructure and services as plain local processes.

Used by ``make up`` (through ``twinstack up``) and by the test fixtures, so that both start
nats-server, influxd and a Ray cluster the same way: on chosen or free ports, with data in a
given directory, waiting on a readiness condition with a deadline, and stopping with SIGTERM
then SIGKILL.
"""

from twinstack.devstack.credentials import LocalCertificateAuthority, LocalIssuer
from twinstack.devstack.infra import InfluxServer, NatsCluster, NatsServer, ensure_influxd
from twinstack.devstack.observe import PrometheusServer, ScrapeTarget
from twinstack.devstack.platform import SERVICES, LocalPlatform, ServiceProcess
from twinstack.devstack.processes import ManagedProcess, free_port, wait_until
from twinstack.devstack.ray_cluster import RayCluster

__all__ = [
    "SERVICES",
    "InfluxServer",
    "LocalCertificateAuthority",
    "LocalIssuer",
    "LocalPlatform",
    "ManagedProcess",
    "NatsCluster",
    "NatsServer",
    "PrometheusServer",
    "RayCluster",
    "ScrapeTarget",
    "ServiceProcess",
    "ensure_influxd",
    "free_port",
    "wait_until",
]
