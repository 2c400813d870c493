import base64
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from twinstack.common.influx import (
    InfluxPoint,
    InfluxStore,
    WriteProtocol,
    proxy_from_environment,
    quote_identifier,
    write_protocol_for,
)


@pytest.mark.parametrize(
    ("version", "protocol"),
    [
        ("1.6.7~rc0", WriteProtocol.V1),
        ("1.7.10", WriteProtocol.V1),
        ("1.8.10", WriteProtocol.V2),
        ("v2.7.11", WriteProtocol.V2),
        ("2.7.1", WriteProtocol.V2),
        ("3.0.1", WriteProtocol.V2),
        ("", WriteProtocol.V2),
    ],
)
def test_write_protocol_follows_the_server_version(version: str, protocol: WriteProtocol) -> None:
    assert write_protocol_for(version) is protocol


def test_line_protocol_escapes_tags_and_strings() -> None:
    line = InfluxPoint(
        "telemetry",
        {"twin_id": 'we ird,id="x"'},
        {"mode": 'say "hi"\\', "count": 3, "ok": True, "temp": 1.5},
        1_700_000_000_000_000_000,
    ).to_line()
    assert line.startswith('telemetry,twin_id=we\\ ird\\,id\\="x" ')
    assert 'mode="say \\"hi\\"\\\\"' in line
    assert "count=3i" in line
    assert "ok=true" in line
    assert line.endswith(" 1700000000000000000")


def test_non_finite_values_never_reach_the_wire() -> None:
    with pytest.raises(ValueError, match="NaN and infinity"):
        InfluxPoint("m", {}, {"temp": math.nan}, 1).to_line()


def test_identifiers_are_quoted() -> None:
    assert quote_identifier('a"b') == '"a\\"b"'
    assert quote_identifier("a\\b") == '"a\\\\b"'


class _Recorder(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, str, dict[str, str], bytes]]] = []

    def do_GET(self) -> None:
        self.requests.append(("GET", self.path, dict(self.headers), b""))
        self.send_response(204)
        self.send_header("X-Influxdb-Version", "v2.7.11")
        self.end_headers()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.requests.append(("POST", self.path, dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.requests = []
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_v2_write_request_shape(recorder: str) -> None:
    """The v2 path, on an HTTP recorder: no InfluxDB 1.8+/2.x can be installed on these
    machines, so this checks what influxdb-client sends; the v1 path runs against influxd."""
    store = InfluxStore(recorder, "plant", token="tok", org="acme")
    assert await store.connect() is WriteProtocol.V2
    await store.write([InfluxPoint("telemetry", {"twin_id": "p1"}, {"temp": 1.5}, 42)])
    await store.close()
    _, path, headers, body = _Recorder.requests[-1]
    assert path.startswith("/api/v2/write?")
    assert "bucket=plant" in path
    assert "org=acme" in path
    assert "precision=ns" in path
    assert headers["Authorization"] == "Token tok"
    assert body.decode() == "telemetry,twin_id=p1 temp=1.5 42"


def test_proxy_comes_from_the_environment_and_no_proxy_bypasses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert proxy_from_environment("http://influx.example:8086") == (None, None)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://us%40er:p%3Ass@secure-proxy.example:3128")
    assert proxy_from_environment("http://influx.example:8086") == (
        "http://proxy.example:3128",
        None,
    )
    # Credentials in the proxy's URL become the proxy's basic authentication.
    assert proxy_from_environment("https://influx.example") == (
        "http://secure-proxy.example:3128",
        "Basic " + base64.b64encode(b"us@er:p:ss").decode(),
    )
    monkeypatch.setenv("NO_PROXY", "localhost,.internal")
    assert proxy_from_environment("http://db.internal:8086") == (None, None)
    assert proxy_from_environment("http://localhost:8086") == (None, None)
    assert proxy_from_environment("http://influx.example:8086")[0] == "http://proxy.example:3128"


async def test_requests_go_through_the_proxy_with_its_credentials(
    recorder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorder stands in for a proxy: it is sent the absolute URL of InfluxDB."""
    for name in ("http_proxy", "https_proxy", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", recorder.replace("http://", "http://alice:s3cret@"))
    store = InfluxStore("http://influx.invalid:8086", "plant")
    await store.connect()
    await store.close()
    method, path, headers, _ = _Recorder.requests[0]
    assert (method, path) == ("GET", "http://influx.invalid:8086/ping")
    assert headers["Proxy-Authorization"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
