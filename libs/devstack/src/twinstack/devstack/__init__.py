"""Runs twinstack's infrastructure and services as plain local processes.

Used by ``make up`` (through ``twinstack up``) and by the test fixtures, so that both start
nats-server and influxd the same way: on chosen or free ports, with data in a given directory,
waiting on a readiness condition with a deadline, and stopping with SIGTERM then SIGKILL.
"""

from twinstack.devstack.infra import InfluxServer, NatsServer, ensure_influxd
from twinstack.devstack.platform import SERVICES, LocalPlatform, ServiceProcess
from twinstack.devstack.processes import ManagedProcess, free_port, wait_until

__all__ = [
    "SERVICES",
    "InfluxServer",
    "LocalPlatform",
    "ManagedProcess",
    "NatsServer",
    "ServiceProcess",
    "ensure_influxd",
    "free_port",
    "wait_until",
]
