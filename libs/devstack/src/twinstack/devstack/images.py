"""Builds the service images with podman, on machines that cannot pull base images.

``python -m twinstack.devstack.images [SERVICE...]`` (``make images``) builds
``localhost/twinstack/<service>:<version>`` from ``services/Dockerfile``:

- the Python base is ``PYTHON_IMAGE`` if given, else the Dockerfile's
  (``python:3.11-slim-bookworm``) if it can be pulled, else one made here from Debian packages
  with mmdebstrap (bookworm's python3 is 3.11, as the services need), imported once and reused;
- uv comes from ``UV_IMAGE`` if given, else the Dockerfile's if it can be pulled, else from an
  image holding the host's uv binary, which must be the release the Dockerfile names (the one
  that wrote uv.lock).

podman on these machines needs two things its defaults do not give (docs/operations.md,
"Container images"): the runtime is runc, because crun refuses the cgroup v1/v2 hybrid layout
with a controller on the v2 side; and containers get exactly the resource limits podman itself
runs with, because the machine's root lacks CAP_SYS_RESOURCE and cannot raise any limit. Both
are applied to every podman command here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from twinstack.devstack.processes import debian_program

ROOT = Path(__file__).resolve().parents[5]
DOCKERFILE = ROOT / "services/Dockerfile"
SERVICES = ("registry", "ingestion", "state", "simulation")
BASE_IMAGE = "localhost/twinstack/python:3.11-bookworm"
# Debian packages of the made base: the interpreter, and CA roots for TLS to NATS, InfluxDB and
# identity providers.
BASE_PACKAGES = ("python3", "ca-certificates")
VERSION = "0.1.0"
CONTAINER_PROCESSES = 4096
PULL_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Podman:
    """podman with the runtime and resource limits these machines need."""

    podman: str
    runtime: str
    nofile: int
    nproc: int

    @classmethod
    def here(cls) -> Podman:
        podman = debian_program("podman", "podman")
        runtime = debian_program("runc", "runc")
        # Limits podman and every container get, as soft and hard limit: a raise of a hard limit
        # is refused here. Open files: this process's hard limit (a soft limit may be raised to
        # it without privilege). Processes: a fixed 4,096 per container user; the machine's
        # own process limit was refused inside podman's chain (runc sets it after conmon).
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = CONTAINER_PROCESSES
        return cls(podman, runtime, nofile, nproc)

    @property
    def ulimits(self) -> list[str]:
        return [
            f"--ulimit=nofile={self.nofile}:{self.nofile}",
            f"--ulimit=nproc={self.nproc}:{self.nproc}",
        ]

    def command(self, *args: str) -> list[str]:
        return [
            debian_program("prlimit", "util-linux"),
            f"--nofile={self.nofile}:{self.nofile}",
            f"--nproc={self.nproc}:{self.nproc}",
            self.podman,
            f"--runtime={self.runtime}",
            *args,
        ]

    def run(self, *args: str, capture: bool = False) -> str:
        done = subprocess.run(self.command(*args), check=True, text=True, capture_output=capture)
        return done.stdout if capture else ""

    def pulled(self, image: str) -> bool:
        """Whether ``image`` is here or could be pulled (registries may be unreachable)."""
        if self.exists(image):
            return True
        try:
            pull = subprocess.run(
                self.command("pull", "--quiet", image),
                check=False,
                capture_output=True,
                text=True,
                timeout=PULL_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return False
        if pull.returncode != 0:
            reason = (pull.stderr.strip().splitlines() or ["no reason given"])[-1]
            print(f"{image} cannot be pulled, so it is made here: {reason}")
        return pull.returncode == 0

    def exists(self, image: str) -> bool:
        return subprocess.run(self.command("image", "exists", image), check=False).returncode == 0

    def size_bytes(self, image: str) -> int:
        (info,) = json.loads(self.run("image", "inspect", image, capture=True))
        return int(info["Size"])

    def layers(self, image: str) -> list[tuple[str, int]]:
        """(instruction, bytes) of each layer, newest last."""
        history = json.loads(self.run("history", "--format", "json", image, capture=True))
        return [(str(h.get("CreatedBy", "")), int(h.get("size", 0))) for h in reversed(history)]


def ensure_base_image(podman: Podman, *, rebuild: bool = False) -> str:
    """Makes the Debian bookworm Python base with mmdebstrap, unless it exists."""
    if podman.exists(BASE_IMAGE) and not rebuild:
        return BASE_IMAGE
    mmdebstrap = debian_program("mmdebstrap", "mmdebstrap")
    with tempfile.TemporaryDirectory(prefix="twinstack-base-") as scratch:
        tarball = Path(scratch) / "base.tar"
        subprocess.run(
            [
                mmdebstrap,
                "--variant=minbase",
                "--mode=root",
                f"--include={','.join(BASE_PACKAGES)}",
                "--aptopt=APT::Install-Recommends false",
                # Documentation and translations are never read in a container.
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                "--dpkgopt=path-exclude=/usr/share/info/*",
                "--customize-hook=rm -rf $1/var/lib/apt/lists/* $1/var/cache/apt/*",
                "bookworm",
                str(tarball),
            ],
            check=True,
            env={**os.environ, "SOURCE_DATE_EPOCH": "1735689600"},
        )
        podman.run(
            "import",
            "--change",
            "ENV LANG=C.UTF-8",
            "--change",
            'CMD ["python3"]',
            str(tarball),
            BASE_IMAGE,
        )
    return BASE_IMAGE


def dockerfile_default(argument: str) -> str:
    """The default the Dockerfile gives a build argument (``PYTHON_IMAGE``, ``UV_IMAGE``)."""
    found = re.search(rf"^ARG {argument}=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    if found is None:
        raise ValueError(f"services/Dockerfile gives {argument} no default")
    return found.group(1)


def dockerfile_uv_release() -> str:
    return dockerfile_default("UV_IMAGE").rpartition(":")[2]


def ensure_uv_image(podman: Podman) -> str:
    """An image with the host's uv at /uv, which must be the Dockerfile's release."""
    release = dockerfile_uv_release()
    image = f"localhost/twinstack/uv:{release}"
    if podman.exists(image):
        return image
    uv = shutil.which("uv")
    if uv is None:
        raise FileNotFoundError("uv not found")
    version = subprocess.run([uv, "--version"], check=True, capture_output=True, text=True)
    if version.stdout.split()[1] != release:
        raise RuntimeError(
            f"the host's uv is {version.stdout.strip()}, the Dockerfile wants {release}: "
            f"pip install uv=={release}, or pass UV_IMAGE"
        )
    with tempfile.TemporaryDirectory(prefix="twinstack-uv-") as context:
        shutil.copy2(uv, Path(context) / "uv")
        (Path(context) / "Containerfile").write_text("FROM scratch\nCOPY uv /uv\n")
        podman.run("build", *podman.ulimits, "-t", image, context)
    return image


def host_ca_bundle() -> str | None:
    """The CA bundle the host's TLS clients use (``SSL_CERT_FILE``, else Debian's)."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def service_image(service: str) -> str:
    return f"localhost/twinstack/{service}:{VERSION}"


def build(
    podman: Podman, services: Sequence[str], *, python_image: str | None, uv_image: str | None
) -> dict[str, str]:
    """Builds each service's image; returns service to image. Without a given base or uv
    image, the Dockerfile's own are pulled, and made here when they cannot be."""
    python_image = python_image or (
        dockerfile_default("PYTHON_IMAGE")
        if podman.pulled(dockerfile_default("PYTHON_IMAGE"))
        else ensure_base_image(podman)
    )
    uv_image = uv_image or (
        dockerfile_default("UV_IMAGE")
        if podman.pulled(dockerfile_default("UV_IMAGE"))
        else ensure_uv_image(podman)
    )
    ca_bundle = host_ca_bundle()
    built = {}
    for service in services:
        image = service_image(service)
        podman.run(
            "build",
            *podman.ulimits,
            # RUN steps reach PyPI through the host's network, trusting what the host trusts
            # (a TLS-intercepting proxy's CA included).
            "--network=host",
            *([f"--secret=id=ca-bundle,src={ca_bundle}"] if ca_bundle else []),
            "--layers",
            f"--build-arg=SERVICE={service}",
            f"--build-arg=PYTHON_IMAGE={python_image}",
            f"--build-arg=UV_IMAGE={uv_image}",
            "-f",
            str(DOCKERFILE),
            "-t",
            image,
            str(ROOT),
        )
        built[service] = image
    return built


def report(podman: Podman, images: dict[str, str]) -> str:
    """A table of each image's size: the base, the dependencies layer and the code layer."""
    lines = [f"{'image':<41} {'size':>8}   base + dependencies + code (MiB)"]
    for image in images.values():
        # The final stage copies the dependencies, then the code: its two COPY layers.
        copies = [size for made_by, size in podman.layers(image) if " COPY " in made_by]
        deps, code = copies[-2:] if len(copies) >= 2 else (0, 0)
        total = podman.size_bytes(image)
        lines.append(
            f"{image:<41} {total / 2**20:6.0f} MiB  "
            f"{(total - deps - code) / 2**20:.0f} + {deps / 2**20:.0f} + {code / 2**20:.1f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("services", nargs="*", help=f"some of {', '.join(SERVICES)} (all)")
    parser.add_argument("--python-image", default=os.environ.get("PYTHON_IMAGE") or None)
    parser.add_argument("--uv-image", default=os.environ.get("UV_IMAGE") or None)
    arguments = parser.parse_args(argv)
    unknown = set(arguments.services) - set(SERVICES)
    if unknown:
        parser.error(f"no such service: {', '.join(sorted(unknown))}")
    podman = Podman.here()
    images = build(
        podman,
        arguments.services or SERVICES,
        python_image=arguments.python_image,
        uv_image=arguments.uv_image,
    )
    print(report(podman, images))
    return 0


if __name__ == "__main__":
    sys.exit(main())
