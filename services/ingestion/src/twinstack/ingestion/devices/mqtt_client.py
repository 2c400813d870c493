"""The gateway's own MQTT connection, for what only an MQTT client can do on nats-server's
listener: publish retained messages (a device that connects later still gets its desired
values). paho runs its network loop on a thread; publishes are awaited until the server's
PUBACK."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import paho.mqtt.client as paho

from twinstack.common.errors import UnavailableError


@dataclass(frozen=True)
class MqttEndpoint:
    """Where nats-server's MQTT listener is (``mqtt://host:port`` or ``mqtts://``) and as whom
    to log on (MQTT takes NATS users' names and passwords)."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = None

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"{self.url!r} is no mqtt:// or mqtts:// URL")
        return parts.hostname, parts.port or (8883 if parts.scheme == "mqtts" else 1883)


class MqttPublisher:
    """One MQTT connection, reconnected by paho whenever it drops."""

    def __init__(self, endpoint: MqttEndpoint, client_id_prefix: str = "twinstack-gateway") -> None:
        self._endpoint = endpoint
        self._client = paho.Client(
            client_id=f"{client_id_prefix}-{uuid.uuid4().hex[:8]}", clean_session=True
        )
        if endpoint.username is not None:
            self._client.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.tls is not None or endpoint.url.startswith("mqtts://"):
            self._client.tls_set_context(endpoint.tls or ssl.create_default_context())
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._connected = threading.Event()
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *_: self._connected.clear()

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, rc: int) -> None:
        if rc == 0:
            self._connected.set()

    async def start(self, *, timeout_s: float = 30.0) -> None:
        host, port = self._endpoint.host_port
        self._client.connect_async(host, port, keepalive=30)
        self._client.loop_start()
        connected = await asyncio.to_thread(self._connected.wait, timeout_s)
        if not connected:
            await self.stop()
            raise UnavailableError(f"MQTT listener {self._endpoint.url} did not accept a login")

    async def stop(self, *, timeout_s: float = 5.0) -> None:
        # Disconnect first: paho's network thread ends once the connection is closed (or
        # nothing awaits an acknowledgement any more).
        self._client.disconnect()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(self._client.loop_stop), timeout_s)

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool, timeout_s: float = 10.0
    ) -> None:
        """Publishes with QoS 1 and waits for the server's acknowledgement.

        Raises:
            UnavailableError: Not acknowledged within ``timeout_s``.
        """
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            raise UnavailableError(f"MQTT publish to {topic} failed: {paho.error_string(info.rc)}")
        # Not connected: paho sends it once it is again, within the timeout or not at all.
        try:
            await asyncio.to_thread(info.wait_for_publish, timeout_s)
        except (RuntimeError, ValueError) as error:
            raise UnavailableError(f"MQTT publish to {topic} failed: {error}") from error
        if not info.is_published():
            raise UnavailableError(f"MQTT publish to {topic} was not acknowledged in {timeout_s} s")
