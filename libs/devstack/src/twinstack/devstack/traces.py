"""A local OTLP/gRPC trace receiver: what `twinstack up --observe` sends traces to.

The OpenTelemetry Collector is not installable on the machines this project is built on (no
Debian package; no release on PyPI from its project), so locally the services export to this
receiver instead. It keeps every span as one JSON line in a file; ``twinstack traces`` reads
them back as trees. On Kubernetes the services export to the real collector (deploy/k8s).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2

from twinstack.devstack.processes import free_port

# The file in `twinstack up`'s data directory that spans are appended to.
TRACES_FILE = "traces.jsonl"
_KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class SpanLink:
    trace_id: str
    span_id: str


@dataclass(frozen=True)
class Span:
    """A finished span as the receiver stores it (ids in hex)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    service: str
    start_ns: int
    end_ns: int
    links: tuple[SpanLink, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    def to_json(self) -> str:
        return json.dumps(
            {
                **{k: v for k, v in self.__dict__.items() if k != "links"},
                "links": [link.__dict__ for link in self.links],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, line: str) -> Span:
        data = json.loads(line)
        return cls(**{**data, "links": tuple(SpanLink(**link) for link in data["links"])})


def _value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return (
        getattr(value, kind)
        if kind in {"string_value", "bool_value", "int_value", "double_value"}
        else str(value)
    )


def spans_of(request: trace_service_pb2.ExportTraceServiceRequest) -> Iterator[Span]:
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        service = str(resource.get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield Span(
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    name=span.name,
                    kind=_KINDS.get(span.kind, "unspecified"),
                    service=service,
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    links=tuple(
                        SpanLink(link.trace_id.hex(), link.span_id.hex()) for link in span.links
                    ),
                    attributes={a.key: _value(a.value) for a in span.attributes},
                    error=span.status.message if span.status.code == 2 else "",
                )


class _Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def Export(  # noqa: N802 - the OTLP service's method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        lines = [span.to_json() + "\n" for span in spans_of(request)]
        with self._lock, self._path.open("a") as file:
            file.writelines(lines)
        return trace_service_pb2.ExportTraceServiceResponse()


class TraceReceiver:
    """Receives OTLP/gRPC traces on 127.0.0.1:``port`` into ``path`` (JSON lines).

    Args:
        path: Where spans are appended.
        port: A free one when 0.
    """

    def __init__(self, path: Path, *, port: int = 0) -> None:
        self.path = path
        self.port = port or free_port()
        self._server: grpc.Server | None = None

    @property
    def endpoint(self) -> str:
        """What TWINSTACK_OTEL_EXPORTER_OTLP_ENDPOINT is set to."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        # The generated registration function carries no annotations.
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _Receiver(self.path), server
        )
        if server.add_insecure_port(f"127.0.0.1:{self.port}") == 0:
            raise RuntimeError(f"address already in use: 127.0.0.1:{self.port}")
        server.start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=2).wait()
            self._server = None


def read_spans(path: Path) -> list[Span]:
    """Every span received so far."""
    if not path.exists():
        return []
    return [Span.from_json(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class TraceTree:
    """A trace's spans as a tree, with the spans of other traces that link to it (a consumer's
    batch span starts its own trace and links to every message's producer span)."""

    trace_id: str
    spans: list[Span]
    linked: list[TraceTree]

    def lines(self, indent: str = "") -> list[str]:
        children: dict[str, list[Span]] = {}
        for span in self.spans:
            children.setdefault(span.parent_span_id, []).append(span)
        ids = {span.span_id for span in self.spans}
        roots = [s for s in self.spans if s.parent_span_id not in ids]
        out: list[str] = []

        def walk(span: Span, depth: int) -> None:
            error = f"  ERROR {span.error}" if span.error else ""
            out.append(
                f"{indent}{'  ' * depth}{span.name}  [{span.service}, {span.kind}] "
                f"{span.duration_ms:.1f} ms{error}"
            )
            for child in sorted(children.get(span.span_id, []), key=lambda s: s.start_ns):
                walk(child, depth + 1)

        for root in sorted(roots, key=lambda s: s.start_ns):
            walk(root, 0)
        for tree in self.linked:
            out.append(f"{indent}  ~> linked trace {tree.trace_id}")
            out.extend(tree.lines(indent + "     "))
        return out


def trace_tree(spans: Iterable[Span], trace_id: str) -> TraceTree:
    """The tree of ``trace_id`` and, recursively, of the traces whose spans link into it."""
    everything = list(spans)
    by_trace: dict[str, list[Span]] = {}
    for span in everything:
        by_trace.setdefault(span.trace_id, []).append(span)

    def build(trace: str, seen: set[str]) -> TraceTree:
        seen.add(trace)
        own = by_trace.get(trace, [])
        own_ids = {s.span_id for s in own}
        linking = sorted(
            {
                span.trace_id
                for span in everything
                if span.trace_id not in seen
                and any(link.trace_id == trace and link.span_id in own_ids for link in span.links)
            }
        )
        return TraceTree(trace, own, [build(t, seen) for t in linking if t not in seen])

    return build(trace_id, set())
