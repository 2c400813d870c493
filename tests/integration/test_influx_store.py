"""The InfluxDB store against a real influxd (Debian's 1.6.7 on these machines)."""

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
from hard_numbers import DOUBLES

from twinstack.common.frames import frame_lines
from twinstack.common.influx import InfluxError, InfluxPoint, InfluxStore, WriteProtocol
from twinstack.common.series import MEASUREMENTS
from twinstack.devstack import InfluxServer, free_port
from twinstack.sdk import make_frame


@pytest.fixture
async def store(influxd: InfluxServer, influx_database: str):  # type: ignore[no-untyped-def]
    store = InfluxStore(influxd.url, influx_database)
    yield store
    await store.close()


def points(twin_id: str, count: int, start_ns: int = 1_700_000_000 * 10**9) -> list[InfluxPoint]:
    return [
        InfluxPoint("telemetry", {"twin_id": twin_id}, {"temp": float(i), "n": i}, start_ns + i)
        for i in range(count)
    ]


async def test_version_picks_the_v1_write_path_and_database_is_created(store: InfluxStore) -> None:
    assert await store.connect() is WriteProtocol.V1
    assert store.server_version.startswith("1.6")
    databases = await store.query("SHOW DATABASES")
    assert [store.database] in databases[0].values


async def test_write_then_read_back_exactly(store: InfluxStore) -> None:
    await store.connect()
    await store.write(points("pump-1", 50))
    series = await store.query(
        "SELECT temp, n FROM telemetry WHERE twin_id = $twin ORDER BY time ASC", {"twin": "pump-1"}
    )
    rows = series[0].rows()
    assert [r["temp"] for r in rows] == [float(i) for i in range(50)]
    assert [r["n"] for r in rows] == list(range(50))
    assert rows[0]["time"] == 1_700_000_000 * 10**9


async def test_rewriting_points_stores_them_once(store: InfluxStore) -> None:
    await store.connect()
    batch = points("pump-2", 20)
    await store.write(batch)
    await store.write(batch)
    await store.write(batch[:5])
    series = await store.query(
        "SELECT count(temp) FROM telemetry WHERE twin_id = $twin", {"twin": "pump-2"}
    )
    assert series[0].values[0][1] == 20


async def test_bound_parameters_defeat_injection(store: InfluxStore) -> None:
    await store.connect()
    await store.write(points("pump-3", 3))
    hostile = "pump-3' OR twin_id =~ /.*/ --"
    assert await store.query("SELECT * FROM telemetry WHERE twin_id = $t", {"t": hostile}) == []
    series = await store.query("SELECT * FROM telemetry WHERE twin_id = $t", {"t": "pump-3"})
    assert len(series[0].values) == 3


async def test_malformed_points_are_rejected_as_not_retryable(store: InfluxStore) -> None:
    await store.connect()
    await store.write(points("pump-4", 1))
    # Same shard as the point above: a field cannot change type within a shard.
    conflicting = InfluxPoint(
        "telemetry", {"twin_id": "pump-4"}, {"temp": "hot"}, 1_700_000_000 * 10**9 + 99
    )
    with pytest.raises(InfluxError) as raised:
        await store.write([conflicting])
    assert raised.value.status == 400
    assert not raised.value.retryable


async def test_v2_path_against_a_v1_only_server_fails_clearly(store: InfluxStore) -> None:
    """1.6.7 has no /api/v2/write: forcing the v2 path must fail loudly, not drop points."""
    await store.connect(protocol=WriteProtocol.V2)
    with pytest.raises(InfluxError) as raised:
        await store.write(points("pump-5", 1))
    assert raised.value.status == 404


async def test_unreachable_server_is_retryable() -> None:
    store = InfluxStore(f"http://127.0.0.1:{free_port()}", "nowhere", timeout_s=1.0)
    with pytest.raises(InfluxError) as raised:
        await store.connect()
    assert raised.value.retryable
    await store.close()


async def test_authentication_on_a_user_with_rights_on_its_database_only(tmp_path: Path) -> None:
    server = InfluxServer(tmp_path / "influx", auth=True)
    server.start()
    try:
        admin = InfluxStore(server.url, "plant", **server.credentials)
        await admin.connect()  # creates the database
        await admin.close()
        credentials = server.credentials
        for statement in (
            "CREATE USER writer WITH PASSWORD 'w-secret'",
            "GRANT ALL ON plant TO writer",
        ):
            answer = await asyncio.to_thread(
                httpx.post,
                f"{server.url}/query",
                params={"q": statement, "u": credentials["username"], "p": credentials["password"]},
            )
            assert answer.status_code == 200, answer.text
            assert "error" not in answer.text, answer.text

        anonymous = InfluxStore(server.url, "plant")
        with pytest.raises(InfluxError, match=r"401|authorization|unable to parse authentication"):
            await anonymous.connect()
        await anonymous.close()

        # Not an admin: it cannot create the database, which exists already, and works in it.
        writer = InfluxStore(server.url, "plant", username="writer", password="w-secret")
        await writer.connect()
        await writer.write([InfluxPoint("m", {"twin_id": "p-1"}, {"v": 1.5}, 10**18)])
        series = await writer.query("SELECT v FROM m")
        assert series[0].values == [[10**18, 1.5]]
        await writer.close()

        # Restarted, the admin's password (kept in its data directory) still works.
        server.stop()
        server.start()
        again = InfluxStore(server.url, "plant", **server.credentials)
        await again.connect()
        await again.close()
    finally:
        server.stop()


def test_an_influxd_whose_picked_port_was_taken_meanwhile_picks_another(tmp_path: Path) -> None:
    server = InfluxServer(tmp_path / "influx")
    picked = server.port
    with socket.socket() as squatter:
        # What an outgoing connection from another process can do between pick and bind.
        squatter.bind(("127.0.0.1", picked))
        squatter.listen()
        server.start()
        try:
            assert server.port != picked
            assert httpx.get(f"{server.url}/ping", timeout=10).status_code == 204
        finally:
            server.stop()


def test_an_influxd_given_a_taken_port_says_so(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = InfluxServer(tmp_path / "influx", port=squatter.getsockname()[1])
        with pytest.raises(RuntimeError, match="address already in use"):
            server.start(timeout_s=30)


async def test_frame_lines_store_every_double_and_integer_exactly(store: InfluxStore) -> None:
    # The historian's formatter writes the shortest text of a double ("1e-7", not repr's
    # "1e-07"): InfluxDB must read each back as the very same number.
    doubles = DOUBLES
    integers = [0, -1, 2**63 - 1, -(2**63) + 1, 10**18, 7, 8, 9, 10, 11, 12]
    start_ns = 1_700_000_000 * 10**9
    frame = make_frame("pump-x", [start_ns + i for i in range(11)], {"x": doubles})
    frame.columns.add(field="n").int_values.values.extend(integers)
    await store.connect()
    await store.write_lines(list(frame_lines(frame, MEASUREMENTS, "twin_id")))
    doubles_back = await store.query(
        'SELECT x FROM "telemetry" WHERE twin_id = $t ORDER BY time ASC', {"t": "pump-x"}
    )
    integers_back = await store.query(
        'SELECT n FROM "telemetry_integer" WHERE twin_id = $t ORDER BY time ASC', {"t": "pump-x"}
    )
    assert [row["x"] for row in doubles_back[0].rows()] == doubles
    assert [row["n"] for row in integers_back[0].rows()] == integers
