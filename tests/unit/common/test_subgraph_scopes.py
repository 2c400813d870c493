"""Subgraph scopes: parsing, the decision, and the twins a scope covers as the graph changes."""

from __future__ import annotations

from typing import Any

import pytest

from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.access import Binding, Principal, PrincipalKind, Subgraph, Verb, decide
from twinstack.common.graph import RelationshipGraph


def test_a_subgraph_scope_parses_into_its_canonical_form() -> None:
    scope = Subgraph.parse("from 'plant-north'  FOLLOW contains,feeds   depth 3")
    assert scope == Subgraph("plant-north", frozenset({"contains", "feeds"}), 3)
    assert str(scope) == "FROM 'plant-north' FOLLOW contains, feeds DEPTH 3"
    assert Subgraph.parse(str(scope)) == scope
    assert Subgraph.parse("FROM 'a' FOLLOW * DEPTH 1") == Subgraph("a", None, 1)
    for not_one in (
        "model:dtmi:x;1",
        "FROM 'a' FOLLOW contains",  # a depth is required
        "FROM 'a' FOLLOW contains DEPTH 2 WHERE x = 1",  # no filters: a scope is a set of twins
        "FROM 'a' FOLLOW contains INCOMING DEPTH 2",
        "FROM 'a b' FOLLOW contains DEPTH 2",
        "FROM a FOLLOW contains DEPTH 2",
    ):
        assert Subgraph.parse(not_one) is None, not_one
    with pytest.raises(ValueError, match="DEPTH is 1 to 10"):
        Subgraph.parse("FROM 'a' FOLLOW contains DEPTH 11")


def test_a_subgraph_binding_grants_its_twins_only() -> None:
    ann = Principal("user:ann", "default", PrincipalKind.USER)
    scoped = Binding("b1", "user:ann", "operator", scope="FROM 'line-1' FOLLOW contains DEPTH 2")
    by_model = Binding("b2", "user:ann", "viewer", scope="model:dtmi:x:Pump;1")
    decision = decide(ann, Verb.TELEMETRY_WRITE, [scoped, by_model])
    assert not decision.allowed
    assert decision.scoped
    assert decision.subgraphs == {Subgraph("line-1", frozenset({"contains"}), 2)}
    assert decision.models == frozenset(), "the viewer binding does not grant telemetry"
    assert "FROM 'line-1' FOLLOW contains DEPTH 2" in decision.explanation
    read = decide(ann, Verb.STATE_READ, [scoped, by_model])
    assert read.models == {"dtmi:x:Pump;1"}
    assert len(read.subgraphs) == 1
    garbled = Binding("b3", "user:ann", "admin", scope="FROM 'x' FOLLOW a DEPTH 99")
    assert not decide(ann, Verb.ADMIN, [garbled]).scoped, (
        "a scope that no longer parses grants nothing"
    )


class View:
    """Just enough of a KvView for the graph to subscribe to."""

    def __init__(self) -> None:
        self.lost: list[Any] = []

    def subscribe(self, handler: Any, *, on_lost: Any) -> None:
        self.lost.append(on_lost)


def relate(graph: RelationshipGraph, source: str, revision: int, *edges: tuple[str, str]) -> None:
    graph.remember(
        source,
        registry_pb2.RelationshipSet(
            relationships=[
                registry_pb2.Relationship(
                    id=f"{name}-{target}", source_id=source, name=name, target_id=target
                )
                for name, target in edges
            ]
        ),
        revision,
    )


def test_the_twins_a_subgraph_covers_follow_the_graph() -> None:
    view = View()
    graph = RelationshipGraph(view)  # type: ignore[arg-type]
    relate(graph, "site", 1, ("contains", "line-1"), ("contains", "line-2"), ("feeds", "grid"))
    relate(graph, "line-1", 2, ("contains", "pump-1"))
    relate(graph, "pump-1", 3, ("contains", "seal-1"))
    relate(graph, "line-2", 4, ("contains", "site"))  # cycles end where seen
    two_deep = Subgraph("site", frozenset({"contains"}), 2)
    assert graph.reachable(two_deep) == {"site", "line-1", "line-2", "pump-1"}
    assert graph.reachable(Subgraph("site", None, 1)) == {"site", "line-1", "line-2", "grid"}
    relate(graph, "line-1", 5)  # pump-1 leaves line-1
    assert graph.reachable(two_deep) == {"site", "line-1", "line-2"}
    relate(graph, "line-1", 4, ("contains", "pump-1"))  # an older revision changes nothing
    assert "pump-1" not in graph.reachable(two_deep)
    view.lost[0]()
    assert graph.reachable(two_deep) == {"site"}, "a lost watch widens no scope"
