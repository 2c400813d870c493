"""Child processes with readiness checks and clean stops."""

from __future__ import annotations

import contextlib
import os
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
