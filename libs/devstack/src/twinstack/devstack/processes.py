"""Child processes with readiness checks and clean stops."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO


def _terminated_with_parent(command: Sequence[str]) -> list[str]:
    """``command`` under util-linux's setpriv, which asks the kernel to send it SIGTERM if the
    supervisor dies, so a killed ``twinstack up`` or test run never leaves servers behind.

    (Not ``preexec_fn``: running Python between fork and exec is unsafe in a threaded process.)
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return list(command)
    return [setpriv, "--pdeathsig", "SIGTERM", "--", *command]


def installed_program(name: str, package: str) -> str:
    """The program ``name`` installed beside this Python (by ``package``), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: install the {package} package")
    return found


def debian_program(name: str, package: str) -> str:
    """The path of the program ``name``; installs Debian's ``package`` when it is missing and
    we are root (these machines install servers and tools from Debian, not from their vendors).
    """
    found = shutil.which(name)
    if found:
        return found
    if os.geteuid() != 0:
        raise FileNotFoundError(f"{name} not found: apt-get install {package} (as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} still not found after installing {package}")
    return found


# Ray's workers listen on 10002-19999 by default; ports below are often taken by well-known
# servers. free_port picks between this and the kernel's ephemeral range.
FREE_PORT_LOWEST = 20000
_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = _EPHEMERAL_RANGE_FILE.read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _bindable(port: int) -> bool:
    # Without SO_REUSEADDR, so a port still in TIME_WAIT counts as taken too.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, for a server started next.

    Not the kernel's pick (binding port 0): that comes from the ephemeral range, from which the
    kernel also takes the local port of every outgoing connection, so between the pick and the
    server's bind any process's connection (a service's to NATS, Ray's) could take it, which
    made services fail with "address already in use". Ports are picked below the ephemeral
    range instead, and not twice in one process (until half that range has been handed out).
    """
    ephemeral_low, _ = _ephemeral_range()
    if ephemeral_low - FREE_PORT_LOWEST > 1000:
        if len(_handed_out) > (ephemeral_low - FREE_PORT_LOWEST) // 2:
            _handed_out.clear()  # a long session: the oldest servers are long gone
        for _ in range(1000):
            port = random.randrange(FREE_PORT_LOWEST, ephemeral_low)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    # No room below the ephemeral range on this machine: the kernel's pick, race and all.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        picked: int = sock.getsockname()[1]
        return picked


def wait_until(
    condition: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.05, what: str = ""
) -> None:
    """Polls ``condition`` until it holds; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what or 'condition'} not met within {timeout_s} s")
        time.sleep(interval_s)


class ManagedProcess:
    """One child process, its log file, and how to tell that it is ready.

    Args:
        name: Short name for messages.
        command: argv.
        log_path: Where stdout and stderr go.
        env: Extra environment variables.
        ready: Returns True once the process serves.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name
        self.command = _terminated_with_parent(command)
        self.log_path = log_path
        self.env = dict(env or {})
        self._ready = ready
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, timeout_s: float = 30.0) -> None:
        """Starts the process and waits until it is ready or has died.

        The kernel's parent-death signal follows the *thread* that started the process: a
        thread that calls this must outlive the process, or the process gets SIGTERM.
        """
        self.launch()
        self.wait_ready(timeout_s=timeout_s)

    def launch(self) -> None:
        """Starts the process without waiting for it (see ``start`` on the calling thread)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self.command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
            # Own process group: Ctrl-C in the terminal reaches the supervisor only, which
            # then stops the children in order.
            start_new_session=True,
        )

    def wait_ready(self, *, timeout_s: float) -> None:
        """Waits until the launched process is ready; stops it if it is not within the time."""
        if self._ready is None:
            return
        ready = self._ready

        def ready_or_dead() -> bool:
            if not self.running():
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}:\n{self.tail()}")
            return ready()

        try:
            wait_until(ready_or_dead, timeout_s=timeout_s, what=f"{self.name} ready")
        except TimeoutError:
            self.stop()
            raise

    def stop(self, *, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``. Returns the exit code."""
        process, self._process = self._process, None
        code = None
        if process is not None:
            if process.poll() is None:
                # A paused process would not act on SIGTERM until resumed.
                process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            code = process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def kill(self) -> None:
        """SIGKILL at once: a crash, for fault tests."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            self._process.wait()
            self._process = None

    def pause(self) -> None:
        """SIGSTOP: alive but unresponsive (a stalled machine), for fault tests."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def tail(self, lines: int = 30) -> str:
        """The last lines of the log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
