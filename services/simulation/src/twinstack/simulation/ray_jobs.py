"""Sweep drivers as Ray jobs, through the Jobs API of the cluster's head (its dashboard port).

Ray's own advice for long-running work on a remote cluster is a job, not Ray Client: a job's
driver runs on the head next to the scheduler and outlives whoever submitted it, while a Ray
Client session dies with its connection. Every call here is blocking HTTP, so each runs on a
thread.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Mapping
from pathlib import Path

from ray.job_submission import JobStatus, JobSubmissionClient

logger = logging.getLogger(__name__)

FINISHED = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}


def submission_id(sweep_id: str, attempt: int) -> str:
    return f"twinstack-sweep-{sweep_id}-{attempt}"


class RayJobs:
    """Submits, stops and checks sweep drivers.

    Args:
        address: The Jobs API (``http://<head>:8265``).
        python: The interpreter that runs the driver on the head.
        env: Environment of the driver and its workers (how to reach NATS and the results
            store), passed as the job's runtime environment.
        token_file: The cluster's token (Ray's token authentication), read at each connect so
            that a rotated token is picked up.
    """

    def __init__(
        self, address: str, python: str, env: Mapping[str, str], token_file: Path | None = None
    ) -> None:
        self._address = address
        self._python = python
        self._env = dict(env)
        self._token_file = token_file
        self._client: JobSubmissionClient | None = None

    def _connected(self) -> JobSubmissionClient:
        if self._client is None:
            headers = {}
            if self._token_file is not None:
                token = self._token_file.read_text().strip()
                headers["Authorization"] = f"Bearer {token}"
            # Checks the head's version over HTTP: raises ConnectionError while it is down.
            self._client = JobSubmissionClient(self._address, headers=headers)
        return self._client

    async def available(self) -> bool:
        """Whether the Jobs API answers now."""

        def check() -> bool:
            try:
                client = self._connected()
                client.get_version()
            except Exception as error:
                logger.info("ray jobs api not reachable: %r", error)
                self._client = None
                return False
            return True

        return await asyncio.to_thread(check)

    async def submit(self, sweep_id: str, attempt: int) -> None:
        command = [self._python, "-m", "twinstack.simulation.driver", sweep_id, str(attempt)]

        def submit() -> None:
            self._connected().submit_job(
                entrypoint=shlex.join(command),
                submission_id=submission_id(sweep_id, attempt),
                runtime_env={"env_vars": self._env},
                # The driver only schedules and counts; its CPUs go to the chunks.
                entrypoint_num_cpus=0,
                metadata={"twinstack_sweep": sweep_id, "attempt": str(attempt)},
            )

        await asyncio.to_thread(submit)
        logger.info("sweep driver submitted", extra={"sweep_id": sweep_id, "attempt": attempt})

    async def finished(self, sweep_id: str, attempt: int) -> bool:
        """Whether the attempt's driver has ended (or the cluster no longer knows it)."""

        def status() -> bool:
            try:
                return (
                    self._connected().get_job_status(submission_id(sweep_id, attempt)) in FINISHED
                )
            except RuntimeError:  # the job is unknown: the head was replaced
                return True

        return await asyncio.to_thread(status)

    async def stop(self, sweep_id: str, attempt: int) -> None:
        """Stops the attempt's driver (Ray then ends its tasks); nothing if it has ended."""

        def stop() -> None:
            try:
                self._connected().stop_job(submission_id(sweep_id, attempt))
            except Exception as error:
                logger.info("driver not stopped: %s", error)

        await asyncio.to_thread(stop)
