"""Generates the Python code of the twinstack protos into libs/api, or checks it is current.

Usage: ``python tools/protogen.py [--check]``. With ``--check`` the code is generated into a
temporary directory and compared with the committed tree; any difference fails, so a proto
change can never land without its generated code.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import grpc_tools

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUTPUT_ROOT = ROOT / "libs" / "api" / "src"
GENERATED_PACKAGE = Path("twinstack") / "api"


def generate(output_root: Path) -> None:
    """Runs protoc (from grpcio-tools) over every proto file into ``output_root``."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    scripts = Path(sysconfig.get_paths()["scripts"])
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy_grpc={scripts / 'protoc-gen-mypy_grpc'}",
        f"--python_out={output_root}",
        f"--pyi_out={output_root}",
        f"--grpc_python_out={output_root}",
        f"--mypy_grpc_out={output_root}",
        *protos,
    ]
    # mypy-protobuf reports every file it writes; only a failure is worth showing.
    result = subprocess.run(command, cwd=PROTO_ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(result.returncode)
    package_root = output_root / GENERATED_PACKAGE
    for directory in [package_root, *(p for p in package_root.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()
    (package_root / "py.typed").touch()


def differences(expected: Path, actual: Path) -> list[str]:
    """Lists files that differ, or exist on one side only, between two trees."""
    found: list[str] = []

    def walk(cmp: filecmp.dircmp[str], prefix: Path) -> None:
        found.extend(str(prefix / name) for name in cmp.left_only + cmp.right_only)
        found.extend(str(prefix / name) for name in cmp.diff_files)
        for name, sub in cmp.subdirs.items():
            walk(sub, prefix / name)

    walk(filecmp.dircmp(expected, actual, ignore=["__pycache__"]), GENERATED_PACKAGE)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    args = parser.parse_args()
    if not args.check:
        shutil.rmtree(OUTPUT_ROOT / GENERATED_PACKAGE, ignore_errors=True)
        generate(OUTPUT_ROOT)
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        generate(Path(scratch))
        stale = differences(Path(scratch) / GENERATED_PACKAGE, OUTPUT_ROOT / GENERATED_PACKAGE)
    if stale:
        print("generated code is stale; run `make proto`:", *stale, sep="\n  ", file=sys.stderr)
        return 1
    print("generated code is current")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
