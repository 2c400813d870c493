"""Commands to devices: a request on ``twins/<twin id>/commands/<command>`` and the device's
answer on the response topic the request names.

The request is JSON, ``{"request_id": "…", "request": <value>, "response_topic":
"twins/<twin id>/responses/<request id>"}``; the device answers there with
``{"response": <value>}``, or ``{"error": "<why>"}`` when it did not do it. MQTT 3.1.1 has no
response topic of its own, hence the one in the payload. Any replica can send a command: the
answer comes back on a subject it subscribed to before sending.
"""

from __future__ import annotations

import json
import uuid

from nats.aio.client import Client as NatsClient
from nats.errors import TimeoutError as NatsTimeoutError

from twinstack.api.common.v1 import types_pb2
from twinstack.common.catalog import ModelCatalog
from twinstack.common.device_topics import COMMANDS, RESPONSES, TwinTopic
from twinstack.common.errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
)
from twinstack.common.gatekeeper import twin_not_found
from twinstack.common.tenancy import external_id, tenant_of
from twinstack.modeling.document import ModelError, Schema
from twinstack.modeling.values import from_json, to_json, value_violations


class CommandInvoker:
    """Sends commands the twins' models declare and waits for the devices' answers.

    Args:
        nc: NATS (the device topics are plain subjects there).
        catalog: The twins and their models.
        default_timeout_s: How long to wait when the caller does not say.
        max_timeout_s: The longest wait a caller may ask for.
    """

    def __init__(
        self,
        nc: NatsClient,
        catalog: ModelCatalog,
        *,
        default_timeout_s: float,
        max_timeout_s: float,
    ) -> None:
        self._nc = nc
        self._catalog = catalog
        self._default_timeout_s = default_timeout_s
        self._max_timeout_s = max_timeout_s

    async def invoke(
        self,
        twin_id: str,
        command: str,
        request: types_pb2.Value | None,
        timeout_s: float | None,
    ) -> tuple[types_pb2.Value | None, str]:
        """Sends ``command`` to the device of ``twin_id`` (an internal id, in the caller's
        scope) and returns its response and the request id.

        Raises:
            NotFoundError: No such twin.
            InvalidArgumentError: A command its model does not declare, a request its schema
                does not allow, or a timeout beyond the limit.
            DeadlineExceededError: No answer in time (the device may still have done it).
            FailedPreconditionError: The device answered that it did not do it, or answered
                what the response schema does not allow.
        """
        timeout_s = timeout_s or self._default_timeout_s
        if timeout_s > self._max_timeout_s:
            raise InvalidArgumentError(
                "timeout too long",
                [FieldViolation("timeout_ms", f"at most {self._max_timeout_s * 1000:.0f} ms")],
            )
        twin = await self._catalog.get(twin_id)
        if twin is None:
            raise twin_not_found(twin_id)
        try:
            commands = (await self._catalog.resolve_current(twin.model_id)).commands
        except ModelError as error:
            raise InvalidArgumentError(
                "unknown model", [FieldViolation("twin_id", f"unknown model {twin.model_id!r}")]
            ) from error
        spec = commands.get(command)
        if spec is None:
            declared = ", ".join(sorted(commands)) or "none"
            raise InvalidArgumentError(
                "unknown command",
                [
                    FieldViolation(
                        "command", f"the model declares no {command!r} (it has: {declared})"
                    )
                ],
            )
        violations = []
        if spec.request is None and request is not None:
            violations.append(FieldViolation("request", f"{command!r} takes no request"))
        if spec.request is not None:
            if request is None:
                violations.append(FieldViolation("request", f"{command!r} needs a request"))
            else:
                violations += value_violations(spec.request, request, "request")
        if violations:
            raise InvalidArgumentError("invalid command request", violations)
        request_id = uuid.uuid4().hex
        tenant, twin_name = tenant_of(twin_id), external_id(twin_id)
        response_topic = TwinTopic(tenant, twin_name, RESPONSES, (request_id,))
        subscription = await self._nc.subscribe(response_topic.subject(), max_msgs=1)
        try:
            body = {
                "request_id": request_id,
                "request": None if request is None else to_json(request),
                "response_topic": response_topic.mqtt_topic(),
            }
            await self._nc.publish(
                TwinTopic(tenant, twin_name, COMMANDS, (command,)).subject(),
                json.dumps(body).encode(),
            )
            try:
                answer = await subscription.next_msg(timeout=timeout_s)
            except (TimeoutError, NatsTimeoutError):
                raise DeadlineExceededError(
                    f"the device of {twin_name!r} did not answer {command!r} within "
                    f"{timeout_s:g} s (request {request_id}); it may still have run it",
                    metadata={"request_id": request_id},
                ) from None
        finally:
            await subscription.unsubscribe()
        return self._response(command, spec.response, answer.data), request_id

    @staticmethod
    def _response(command: str, schema: Schema | None, data: bytes) -> types_pb2.Value | None:
        def refused(description: str) -> FailedPreconditionError:
            return FailedPreconditionError(
                f"the device answered {command!r} with an error",
                [FieldViolation("response", description)],
                violation_type="DEVICE_RESPONSE",
            )

        try:
            answer = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise refused(f"not JSON: {error}") from None
        if not isinstance(answer, dict):
            raise refused("not an object with 'response' or 'error'")
        if "error" in answer:
            raise refused(str(answer["error"])[:1024])
        if schema is None:
            return None
        try:
            value = from_json(schema, answer.get("response"), "response")
        except ValueError as error:
            raise refused(str(error)) from None
        problems = value_violations(schema, value, "response")
        if problems:
            raise refused("; ".join(p.description for p in problems))
        return value
