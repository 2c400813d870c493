"""The registry's twins as services that must know a twin's model read them.

The registry owns the ``registry`` KV bucket; other services only read it. A
:class:`TwinDirectory` is one part of a :class:`~twinstack.common.kv_view.KvView`: lookups are
in memory, and a twin the view has not seen yet is read from the bucket, so a twin created a
moment ago is never reported unknown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from nats.js.kv import KeyValue

from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.kv_view import KvView
from twinstack.common.nats import TWIN_KEY_PREFIX, read_document, twin_key
from twinstack.common.tenancy import tenant_of

# (twin id, the twin before, the twin after); None for a twin that did not or no longer exists.
TwinChange = Callable[[str, registry_pb2.Twin | None, registry_pb2.Twin | None], None]


class TwinDirectory:
    """Twin id to twin document, kept current by a view of the registry bucket.

    Args:
        view: The view it is part of (it follows the ``twins.`` keys of it).
    """

    def __init__(self, view: KvView) -> None:
        self._view = view
        self._twins: dict[str, registry_pb2.Twin] = {}
        self._per_tenant: Counter[str] = Counter()
        # Told of every twin taken or dropped, for views that index twins further.
        self.change_listeners: list[TwinChange] = []
        # Told of every twin the watch reports deleted (from the initial values on), for
        # services that keep data per twin and must let go of it.
        self.deletion_listeners: list[Callable[[str], None]] = []
        view.subscribe(self._apply, on_lost=self._lost)

    def _lost(self) -> None:
        self._twins.clear()
        self._per_tenant.clear()

    def _apply(self, entry: KeyValue.Entry) -> None:
        if not entry.key.startswith(TWIN_KEY_PREFIX):
            return
        twin_id = entry.key.removeprefix(TWIN_KEY_PREFIX)
        revision = entry.revision or 0
        known = self._twins.get(twin_id)
        # A write the registry already remembered may be newer than this entry.
        if known is not None and known.revision > revision:
            return
        if entry.operation in ("DEL", "PURGE") or not entry.value:
            self.forget(twin_id)
            for listener in self.deletion_listeners:
                listener(twin_id)
        else:
            twin = registry_pb2.Twin.FromString(entry.value)
            twin.revision = revision
            self.remember(twin)

    def remember(self, twin: registry_pb2.Twin) -> None:
        """Takes a twin (from the watch, or one the caller just wrote), unless the directory
        already holds a newer revision."""
        known = self._twins.get(twin.id)
        if known is not None and known.revision >= twin.revision:
            return
        self._twins[twin.id] = twin
        if known is None:
            self._per_tenant[tenant_of(twin.id)] += 1
        for listener in self.change_listeners:
            listener(twin.id, known, twin)

    def forget(self, twin_id: str) -> None:
        """Drops a deleted twin."""
        known = self._twins.pop(twin_id, None)
        if known is not None:
            self._per_tenant[tenant_of(twin_id)] -= 1
            for listener in self.change_listeners:
                listener(twin_id, known, None)

    async def get(self, twin_id: str) -> registry_pb2.Twin | None:
        """The twin, or None if the registry has no twin with that id."""
        twin = self._twins.get(twin_id)
        if twin is not None:
            return twin
        found = await read_document(self._view.bucket, twin_key(twin_id), registry_pb2.Twin)
        if found is None:
            return None
        twin, revision = found
        twin.revision = revision
        cached = self._twins.get(twin_id)
        # The watch may have delivered a newer revision while the read was in flight.
        if self._view.following and (cached is None or cached.revision < twin.revision):
            self.remember(twin)
        return twin

    def cached(self, twin_id: str) -> registry_pb2.Twin | None:
        """A copy of the twin as the directory holds it (possibly behind the bucket), or None."""
        twin = self._twins.get(twin_id)
        if twin is None or not self._view.following:
            return None
        copy = registry_pb2.Twin()
        copy.CopyFrom(twin)
        return copy

    def twin(self, twin_id: str) -> registry_pb2.Twin | None:
        """The twin as held (not a copy: callers must not modify it), or None."""
        return self._twins.get(twin_id)

    def ids(self) -> Iterator[str]:
        """The ids of every twin held, in no particular order."""
        return iter(self._twins)

    def __len__(self) -> int:
        return len(self._twins)

    def count(self, tenant: str) -> int:
        """How many twins of ``tenant`` are held."""
        return self._per_tenant[tenant]
