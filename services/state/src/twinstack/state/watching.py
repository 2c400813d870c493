"""Change streams of twin state, read straight from the KV bucket's stream.

Every state write is a message on the bucket's stream, and its sequence is the document's
revision, so one number resumes a watch over any set of twins. The bucket keeps one revision
per twin: a watcher that lags behind (or resumes after a long pause) gets each twin's latest
state and skips the intermediate ones, which is what a live view wants. The watch reads with
an ephemeral pull consumer, fetching only when the caller has taken what it got, so a slow
caller is held back by gRPC flow control and nothing is buffered without limit.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from twinstack.api.state.v1 import state_pb2
from twinstack.common.errors import FieldViolation, InvalidArgumentError
from twinstack.common.metrics import gauge
from twinstack.common.nats import STATE_TWINS_BUCKET
from twinstack.common.pull import fetch
from twinstack.common.tasks import raise_if_cancelled

KV_STREAM = f"KV_{STATE_TWINS_BUCKET}"
KV_SUBJECT_PREFIX = f"$KV.{STATE_TWINS_BUCKET}."

_open_watches = 0
gauge(
    "twinstack.state",
    "twinstack.state.watches",
    "Watches open now (each holds a consumer)",
    lambda: [(float(_open_watches), {})],
)


async def watch_states(
    js: JetStreamContext,
    twin_ids: list[str],
    wanted: Callable[[state_pb2.TwinState], bool],
    *,
    after_revision: int,
    fetch_messages: int,
    idle_timeout_s: float,
    caller_gone: Callable[[], bool] = lambda: False,
) -> AsyncIterator[tuple[state_pb2.TwinState, bool]]:
    """Yields (state, catching_up) for every change of the watched twins, until cancelled or
    ``caller_gone()``.

    Args:
        js: JetStream.
        twin_ids: Twins whose keys the consumer filters on; empty for all twins.
        wanted: Further filter on the decoded state (a model filter).
        after_revision: 0 for the current states first; otherwise changes after it.
        fetch_messages: Most messages taken from the server at once.
        idle_timeout_s: Longest wait of one fetch; a watch only ends when cancelled.
        caller_gone: Checked after every fetch: a caller that left an idle watch is noticed
            here, since nothing is written to it that could fail.
    """
    subjects = [f"{KV_SUBJECT_PREFIX}{twin_id}" for twin_id in twin_ids] or [
        f"{KV_SUBJECT_PREFIX}>"
    ]
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        mem_storage=True,
        # The server removes the consumer when the watch stops without saying so.
        inactive_threshold=max(30.0, idle_timeout_s * 4),
        filter_subjects=subjects if len(subjects) > 1 else None,
        filter_subject=subjects[0] if len(subjects) == 1 else None,
    )
    # Changes stored before the watch began are its catch-up; later ones are live.
    stored_up_to = (await js.stream_info(KV_STREAM)).state.last_seq
    if after_revision > stored_up_to:
        # A consumer started there would silently skip every change until then.
        raise InvalidArgumentError(
            "after_revision is ahead of every stored change",
            [FieldViolation("after_revision", f"at most the latest revision, {stored_up_to}")],
        )
    if after_revision:
        config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = after_revision + 1
    else:
        config.deliver_policy = DeliverPolicy.LAST_PER_SUBJECT
    info = await js.add_consumer(KV_STREAM, config)
    subscription = await js.pull_subscribe_bind(consumer=info.name, stream=KV_STREAM)
    global _open_watches  # noqa: PLW0603 - one count per process, read by the gauge
    _open_watches += 1
    try:
        while not caller_gone():
            try:
                messages = await fetch(subscription, fetch_messages, idle_timeout_s)
            except (NatsTimeoutError, TimeoutError):
                raise_if_cancelled()
                continue
            # A caller who left cancelled this once; a fetch may have swallowed it.
            raise_if_cancelled()
            for message in messages:
                metadata = message.metadata
                if not message.data:  # a delete marker
                    continue
                state = state_pb2.TwinState.FromString(message.data)
                state.revision = metadata.sequence.stream
                if wanted(state):
                    yield state, metadata.sequence.stream <= stored_up_to
    finally:
        _open_watches -= 1
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
        with contextlib.suppress(Exception):
            await js.delete_consumer(KV_STREAM, info.name)
