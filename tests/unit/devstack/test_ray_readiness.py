"""The local Ray head counts as started only once its state API lists a live node: a dashboard
that answers before then, with a page or JSON of another shape, is "not yet", never a crash."""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from twinstack.devstack.ray_cluster import RayCluster

ALIVE = b'{"data": {"result": {"result": [{"state": "ALIVE"}, {"state": "DEAD"}]}}}'


class _Dashboard(http.server.BaseHTTPRequestHandler):
    body = b""
    content_type = "application/json"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", self.content_type)
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[tuple[RayCluster, type[_Dashboard]]]:
    handler = type("Dashboard", (_Dashboard,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    cluster = RayCluster(tmp_path, dashboard_port=server.server_address[1])
    try:
        yield cluster, handler
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)


@pytest.mark.parametrize(
    "body",
    [
        b"<html>Ray Dashboard</html>",
        b"",
        b"[]",
        b'{"data": null}',
        b'{"data": {"result": {"result": "starting"}}}',
        b'{"data": {"result": {"result": ["ALIVE"]}}}',
    ],
)
def test_a_dashboard_without_its_state_api_is_not_ready(
    dashboard: tuple[RayCluster, type[_Dashboard]], body: bytes
) -> None:
    cluster, handler = dashboard
    handler.body = body
    assert cluster.alive_nodes() == 0


def test_live_nodes_are_counted(dashboard: tuple[RayCluster, type[_Dashboard]]) -> None:
    cluster, handler = dashboard
    handler.body = ALIVE
    assert cluster.alive_nodes() == 1
