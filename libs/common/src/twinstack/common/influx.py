"""The InfluxDB store: telemetry and forecast points in, InfluxQL results out.

InfluxDB speaks two write protocols. Servers from 1.8 on (2.x and 3.x too) take the v2 write
API, used here through ``influxdb-client``. Older 1.x servers, such as Debian's 1.6.7, only
take the v1 ``/write`` endpoint. :meth:`InfluxStore.connect` reads the version from ``/ping`` and
picks the protocol; both send the same line protocol. Reads use
InfluxQL over ``/query`` with bound parameters, which every version answers.

HTTP goes through aiohttp (which influxdb-client uses too), not httpx: a small write costs
aiohttp about 0.2 ms of CPU and httpx about 1.3 ms, and the historian makes one per batch.
"""

from __future__ import annotations

import base64
import enum
import json
import logging
import math
import re
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from influxdb_client import WritePrecision
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.rest import ApiException

from twinstack.common.settings import ServiceSettings, revealed

logger = logging.getLogger(__name__)

FieldValue = float | int | bool | str


class WriteProtocol(enum.Enum):
    """Which HTTP write endpoint a server gets."""

    V1 = "v1"  # POST /write?db=&rp=&precision=ns
    V2 = "v2"  # POST /api/v2/write?bucket=&org=&precision=ns, through influxdb-client


class InfluxError(Exception):
    """A request to InfluxDB failed.

    Attributes:
        status: HTTP status, or None when the server could not be reached.
        retryable: Whether the same request may succeed later (5xx, 429, network errors).
        retry_after_s: The server's Retry-After, when it sent one.
    """

    def __init__(
        self, message: str, *, status: int | None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s
        self.retryable = status is None or status == 429 or status >= 500


@dataclass(frozen=True)
class InfluxPoint:
    """One point: measurement, tags, fields and a nanosecond timestamp."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int

    def to_line(self) -> str:
        """The point in line protocol, tags sorted by key as InfluxDB prefers."""
        tags = "".join(
            f",{escape_key(key)}={escape_key(self.tags[key])}" for key in sorted(self.tags)
        )
        fields = ",".join(
            f"{escape_key(key)}={field_literal(value)}" for key, value in self.fields.items()
        )
        return f"{escape_measurement(self.measurement)}{tags} {fields} {self.time_ns}"


# Line protocol escaping: commas and spaces end a measurement; commas, equals signs and spaces
# end a tag or field key or tag value. Control characters would end the line itself.
_CONTROL_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ ", **_CONTROL_ESCAPES})
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", **_CONTROL_ESCAPES})


def escape_measurement(name: str) -> str:
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_key(name: str) -> str:
    """A tag key, tag value or field key for line protocol."""
    return name.translate(_KEY_ESCAPES)


def field_literal(value: FieldValue) -> str:
    """A field value in line protocol: ``1.5``, ``3i``, ``true``, ``"text"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            # Line protocol has no NaN or infinity; callers validate them away first.
            raise ValueError("NaN and infinity cannot be stored")
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class QuerySeries:
    """One series of an InfluxQL result."""

    name: str
    columns: list[str]
    values: list[list[Any]]
    tags: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """The values as one dict per row, keyed by column."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.values]


_VERSION = re.compile(r"v?(\d+)\.(\d+)")


def write_protocol_for(version: str) -> WriteProtocol:
    """The write protocol a server of ``version`` (as ``/ping`` reports it) accepts."""
    match = _VERSION.match(version)
    if match is None:
        # Servers that do not say (3.x builds, proxies) are current ones.
        return WriteProtocol.V2
    major, minor = int(match.group(1)), int(match.group(2))
    return WriteProtocol.V2 if (major, minor) >= (1, 8) else WriteProtocol.V1


def quote_identifier(name: str) -> str:
    """An InfluxQL identifier in double quotes, safe whatever ``name`` holds."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class InfluxStore:
    """Writes points to and queries one InfluxDB database.

    Args:
        url: Base URL, e.g. ``http://influxdb:8086``.
        database: Database (1.x) or bucket (2.x/3.x, through DBRP for InfluxQL).
        retention_policy: Retention policy for 1.x writes.
        username: 1.x user, when authentication is on.
        password: 1.x password.
        token: 2.x/3.x API token; used instead of username and password when set.
        org: 2.x organisation; ``-`` for 1.8.
        timeout_s: Timeout of every HTTP request.
    """

    def __init__(
        self,
        url: str,
        database: str,
        *,
        retention_policy: str = "autogen",
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        org: str = "-",
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy
        self._username = username
        self._password = password
        self._token = token
        self._org = org
        self._timeout_s = timeout_s
        self._headers = {"Authorization": f"Token {token}"} if token else {}
        # Made on first use: aiohttp wants its session made inside the event loop.
        self._session: aiohttp.ClientSession | None = None
        self._proxy_headers: dict[str, str] = {}
        self._v2_client: InfluxDBClientAsync | None = None
        self.server_version = ""
        self.protocol: WriteProtocol | None = None

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> InfluxStore:
        """A store for the database the settings name."""
        return cls(
            settings.influx_url,
            settings.influx_database,
            retention_policy=settings.influx_retention_policy,
            username=settings.influx_username,
            password=revealed(settings.influx_password),
            token=revealed(settings.influx_token),
            org=settings.influx_org,
            timeout_s=settings.influx_timeout_s,
        )

    async def connect(self, protocol: WriteProtocol | None = None) -> WriteProtocol:
        """Pings the server, picks the write protocol and, on 1.x, creates the database.

        Args:
            protocol: Forces a protocol instead of choosing from the version.
        """
        try:
            response = await self._request("GET", "/ping", {}, what="ping")
        except InfluxError as error:
            raise InfluxError(
                f"InfluxDB at {self.url} unreachable: {error}", status=None
            ) from error
        if response.status != 204:
            raise InfluxError(f"/ping answered {response.status}", status=response.status)
        self.server_version = response.headers.get("X-Influxdb-Version", "")
        self.protocol = protocol or write_protocol_for(self.server_version)
        if self.protocol is WriteProtocol.V2:
            self._v2_client = InfluxDBClientAsync(
                url=self.url,
                token=self._token or f"{self._username or ''}:{self._password or ''}",
                org=self._org,
                timeout=int(self._timeout_s * 1000),
            )
        if self.server_version.startswith("1."):
            try:
                await self._post_query(f"CREATE DATABASE {quote_identifier(self.database)}")
            except InfluxError as error:
                # A user with rights on its database only (as in production) may not create
                # one: the database is then made by whoever made the user.
                if "requires admin privilege" not in str(error):
                    raise
                logger.info("not an InfluxDB admin: %s is expected to exist", self.database)
        logger.info(
            "influxdb connected",
            extra={"version": self.server_version, "write_protocol": self.protocol.value},
        )
        return self.protocol

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._v2_client is not None:
            await self._v2_client.close()

    async def write(self, points: Sequence[InfluxPoint]) -> None:
        """Writes points in one request. Rewriting a point (same series and time) is harmless.

        Raises:
            InfluxError: with ``retryable`` telling whether a retry may succeed.
        """
        await self.write_lines([point.to_line() for point in points])

    async def write_lines(self, lines: Sequence[str]) -> None:
        """Writes points given in line protocol in one request; see :meth:`write`."""
        if not lines:
            return
        body = "\n".join(lines)
        if self.protocol is WriteProtocol.V2:
            await self._write_v2(body)
        elif self.protocol is WriteProtocol.V1:
            await self._write_v1(body)
        else:
            raise RuntimeError("InfluxStore.connect() was not called")

    async def _write_v1(self, body: str) -> None:
        params = {"db": self.database, "rp": self.retention_policy, "precision": "ns"}
        params.update(self._credentials())
        response = await self._request("POST", "/write", params, body.encode(), what="write")
        if response.status != 204:
            raise InfluxError(
                f"write answered {response.status}: {response.text.strip()}",
                status=response.status,
                retry_after_s=_retry_after(response.headers.get("Retry-After")),
            )

    async def _write_v2(self, body: str) -> None:
        assert self._v2_client is not None
        bucket = self.database
        if self.server_version.startswith("1."):
            bucket = f"{self.database}/{self.retention_policy}"
        try:
            await self._v2_client.write_api().write(
                bucket=bucket, org=self._org, record=body, write_precision=WritePrecision.NS
            )
        except ApiException as error:
            headers = error.headers or {}
            raise InfluxError(
                f"write answered {error.status}: {error.body}",
                status=error.status,
                retry_after_s=_retry_after(headers.get("Retry-After")),
            ) from error
        except (OSError, TimeoutError) as error:
            raise InfluxError(f"write failed: {error}", status=None) from error

    async def query(
        self, influxql: str, params: Mapping[str, FieldValue] | None = None
    ) -> list[QuerySeries]:
        """Runs InfluxQL SELECTs (several separated by ``;`` come back together); values are
        bound as ``$name`` parameters, never spliced.

        Timestamps come back as integer nanoseconds.
        """
        query_params = {"db": self.database, "q": influxql, "epoch": "ns"}
        if params:
            query_params["params"] = json.dumps(dict(params))
        query_params.update(self._credentials())
        return _parse_results(await self._request("GET", "/query", query_params))

    async def _post_query(self, influxql: str) -> None:
        params = {"q": influxql, **self._credentials()}
        _parse_results(await self._request("POST", "/query", params))

    async def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        body: bytes | None = None,
        *,
        what: str = "query",
    ) -> _Response:
        """One HTTP exchange, read whole; InfluxError (retryable) when it could not be made."""
        if self._session is None:
            proxy, proxy_authorization = proxy_from_environment(self.url)
            headers = dict(self._headers)
            if proxy_authorization is not None:
                # A plain-HTTP request is sent to the proxy itself; an HTTPS one goes through
                # a CONNECT tunnel, whose own request carries the proxy's credentials.
                if self.url.startswith("https:"):
                    self._proxy_headers = {"Proxy-Authorization": proxy_authorization}
                else:
                    headers["Proxy-Authorization"] = proxy_authorization
            self._session = aiohttp.ClientSession(
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                # Proxies from the environment (HTTP(S)_PROXY, NO_PROXY), read once. Not
                # trust_env: it reads ~/.netrc in a worker thread on every request, which was
                # 13% of the ingestion process's samples at ~70 historian writes a second.
                proxy=proxy,
            )
        try:
            async with self._session.request(
                method,
                f"{self.url}{path}",
                params=params,
                data=body,
                proxy_headers=self._proxy_headers or None,
            ) as response:
                content = await response.read()
                return _Response(response.status, response.headers, content)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise InfluxError(f"{what} failed: {error!r}", status=None) from error

    def _credentials(self) -> dict[str, str]:
        if self._token or not self._username:
            return {}
        return {"u": self._username, "p": self._password or ""}


@dataclass(frozen=True)
class _Response:
    status: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


def proxy_from_environment(url: str) -> tuple[str | None, str | None]:
    """The proxy that ``HTTP_PROXY``/``HTTPS_PROXY`` (and ``NO_PROXY``) name for ``url``, and a
    ``Proxy-Authorization`` value from credentials in the proxy's URL, if it has any."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None, None
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy is None:
        return None, None
    proxy_parts = urllib.parse.urlsplit(proxy)
    if proxy_parts.username is None:
        return proxy, None
    credentials = (
        f"{urllib.parse.unquote(proxy_parts.username)}:"
        f"{urllib.parse.unquote(proxy_parts.password or '')}"
    )
    host = proxy_parts.netloc.rpartition("@")[2]
    return (
        urllib.parse.urlunsplit(proxy_parts._replace(netloc=host)),
        "Basic " + base64.b64encode(credentials.encode()).decode(),
    )


def _parse_results(response: _Response) -> list[QuerySeries]:
    if response.status >= 300:
        raise InfluxError(
            f"query answered {response.status}: {response.text.strip()}",
            status=response.status,
        )
    payload = json.loads(response.content)
    if "error" in payload:
        raise InfluxError(f"query failed: {payload['error']}", status=response.status)
    series: list[QuerySeries] = []
    for result in payload.get("results", []):
        if "error" in result:
            raise InfluxError(f"query failed: {result['error']}", status=400)
        series.extend(
            QuerySeries(
                name=item.get("name", ""),
                columns=item["columns"],
                values=item.get("values", []),
                tags=item.get("tags", {}),
            )
            for item in result.get("series", [])
        )
    return series


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
