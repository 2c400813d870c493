"""The shipped alert rules and dashboards: generated files current, rules valid and behaving as
their promtool unit tests (alerts_test.yml) say, dashboards well formed and naming only the
provisioned datasources, every metric documented, every alert with its runbook.

That the queries return data from a running platform is tests/e2e/test_observability.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
OBSERVABILITY = ROOT / "deploy/k8s/base/observability"
RULES = OBSERVABILITY / "rules.yml"
OPERATIONS = (ROOT / "docs/operations.md").read_text()
# Metric names: ours, gRPC server calls, the process collector's.
METRIC = re.compile(r"\b(?:twinstack_\w+|rpc_server_\w+|process_\w+)\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is required (Debian's prometheus package; make deps installs it)")
    return found


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        p.name: json.loads(p.read_text()) for p in sorted(OBSERVABILITY.glob("dashboards/*.json"))
    }


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def queries() -> list[str]:
    found = [rule["expr"] for rule in alerts()]
    for board in dashboards().values():
        for panel in board["panels"]:
            found += [t.get("expr") or t["query"] for t in panel["targets"]]
    return found


def test_generated_files_are_current() -> None:
    checked = subprocess.run(
        [sys.executable, str(ROOT / "tools/observability.py"), "--check"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr


def test_rules_are_valid_and_pass_their_unit_tests() -> None:
    checked = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], check=False, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"],
        check=False,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tested_alerts = set(
        re.findall(r"alertname: (\w+)", (Path(__file__).parent / "alerts_test.yml").read_text())
    )
    assert tested_alerts == {rule["alert"] for rule in alerts()}, "every alert has a unit test"


def test_every_alert_has_a_severity_a_summary_and_a_runbook() -> None:
    for rule in alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{name.lower()}"
        assert re.search(rf"^#+ {name}$", OPERATIONS, re.MULTILINE), (
            f"no runbook section for {name}"
        )


def test_dashboards_are_well_formed_and_use_provisioned_datasources() -> None:
    provisioned = yaml.safe_load((OBSERVABILITY / "grafana-datasources.yaml").read_text())
    uids = {d["uid"]: d["type"] for d in provisioned["datasources"]}
    boards = dashboards()
    assert set(boards) == {
        "platform-overview.json",
        "telemetry-pipeline.json",
        "twins.json",
        "simulation.json",
    }
    assert len({b["uid"] for b in boards.values()}) == len(boards)
    for name, board in boards.items():
        assert board["panels"], name
        assert len({p["id"] for p in board["panels"]}) == len(board["panels"]), name
        for panel in board["panels"]:
            where = f"{name}: {panel['title']}"
            position = panel["gridPos"]
            assert position["x"] + position["w"] <= 24, where
            assert panel["targets"], where
            for target in panel["targets"]:
                source = target["datasource"]
                assert uids[source["uid"]] == source["type"], where
                assert target.get("expr") or target.get("query"), where
        for variable in board["templating"]["list"]:
            source = variable["datasource"]
            assert uids[source["uid"]] == source["type"], f"{name}: ${variable['name']}"
            assert f"${variable['name']}" in json.dumps(board["panels"]), "an unused variable"


def test_every_metric_queried_is_documented() -> None:
    used = {
        name.removesuffix(suffix) if name.endswith(suffix) else name
        for query in queries()
        for name in METRIC.findall(query)
        for suffix in HISTOGRAM_SUFFIXES
        if name.endswith(suffix) or not name.endswith(HISTOGRAM_SUFFIXES)
    }
    assert len(used) >= 15
    undocumented = sorted(name for name in used if f"`{name}" not in OPERATIONS)
    assert not undocumented, f"metrics missing from docs/operations.md: {undocumented}"
