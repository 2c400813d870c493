"""Writes deploy/k8s/base/nats-auth.conf (the NATS users and permissions of every service) from
twinstack.common.nats_permissions, or checks it is current with ``--check``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from twinstack.common.nats_permissions import kubernetes_authorization_block

TARGET = Path(__file__).resolve().parent.parent / "deploy" / "k8s" / "base" / "nats-auth.conf"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the file is not current")
    args = parser.parse_args()
    text = kubernetes_authorization_block()
    if args.check:
        if TARGET.read_text() != text:
            print(f"{TARGET} is stale: run python tools/nats_auth.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
