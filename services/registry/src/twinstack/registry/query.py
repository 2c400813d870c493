"""The registry query language: filters over twins and traversal of the twin graph.

Grammar (keywords are case-insensitive; docs/models.md has examples)::

    query      := [ "FROM" STRING [ traversal ] ] [ "WHERE" condition ]
    traversal  := "FOLLOW" ( "*" | NAME ( "," NAME )* ) [ "INCOMING" ] [ "DEPTH" INTEGER ]
    condition  := and ( "OR" and )*
    and        := not ( "AND" not )*
    not        := "NOT" not | primary
    primary    := "(" condition ")" | function | path comparison
    function   := "IS_OF_MODEL" "(" STRING [ "," "EXACT" ] ")"
                | "IS_DEFINED" "(" path ")"
                | "STARTS_WITH" "(" path "," STRING ")"
    comparison := ( "=" | "!=" | "<" | "<=" | ">" | ">=" ) literal
                | "IN" "(" literal ( "," literal )* ")"
    path       := "$id" | "$model" | "$revision" | "$created" | "$updated"
                | NAME ( "." NAME )*          (a property, or a field of an object/component)
    literal    := STRING | NUMBER | "TRUE" | "FALSE"

The parser is a hand-written recursive descent over a regular-expression tokenizer: user text is
never evaluated, strings are only ever compared as values, and length, nesting and the number
of terms are bounded. A comparison with a missing property, or between values of different
types, is false.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.errors import FieldViolation, InvalidArgumentError
from twinstack.common.ids import LOCAL_ID_PATTERN
from twinstack.common.tenancy import SEPARATOR, TenantIds, external_id
from twinstack.modeling.lexing import Token, UnexpectedCharacterError, tokenize
from twinstack.registry.index import RegistryIndex
from twinstack.registry.property_index import PropertyCondition, indexable

MAX_QUERY_CHARS = 4096
MAX_TERMS = 200
MAX_NESTING = 32
MAX_DEPTH = 10
# How much cheaper per twin reading an index's matches is than scanning (see _candidates).
_INDEX_ADVANTAGE = 4
_CLAUSE_KEYWORDS = frozenset({"INCOMING", "DEPTH", "WHERE"})
METADATA = frozenset({"$id", "$model", "$revision", "$created", "$updated"})

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
    r"|(?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<path>\$?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r"|(?P<op><=|>=|!=|[=<>(),*]))"
)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

Twin = registry_pb2.Twin
Predicate = Callable[[Twin, dict[str, Any]], bool]


@dataclass(frozen=True)
class Narrowing:
    """A condition every match must satisfy that an index answers directly: the twins of a
    model (with its descendants unless exact), or a set of ids."""

    kind: str  # "model" or "id"
    values: tuple[str, ...]
    exact: bool = False


# What a condition tells the planner: narrowings and property conditions that every match of
# it satisfies (an AND collects those of its parts; OR and NOT promise nothing).
Hints = tuple[Narrowing | PropertyCondition, ...]


class QueryError(InvalidArgumentError):
    def __init__(self, message: str, position: int) -> None:
        super().__init__(
            "invalid query", [FieldViolation("query", f"{message} (at character {position})")]
        )


@dataclass(frozen=True)
class Traversal:
    start: str
    relationships: tuple[str, ...]  # empty: any relationship
    incoming: bool
    depth: int


@dataclass(frozen=True)
class Query:
    traversal: Traversal | None
    start_only: str | None  # FROM without FOLLOW: just that twin
    predicate: Predicate | None
    # A top-level IS_OF_MODEL or $id = / IN, to narrow the candidates before filtering.
    narrowing: Narrowing | None
    # Top-level property comparisons a property index may answer (docs/models.md).
    conditions: tuple[PropertyCondition, ...] = ()


def _tokens(text: str) -> list[Token]:
    try:
        return tokenize(_TOKEN, text)
    except UnexpectedCharacterError as error:
        raise QueryError(str(error), error.position) from None


def _unquote(token: Token) -> str:
    body = token.text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def _value_at(twin: Twin, properties: dict[str, Any], path: str) -> Any:
    # A query speaks of its caller's own ids; the twins it sees are all of its tenant.
    if path == "$id":
        return external_id(twin.id)
    if path == "$model":
        return external_id(twin.model_id)
    if path == "$revision":
        return twin.revision
    if path == "$created":
        return twin.create_time.ToJsonString()
    if path == "$updated":
        return twin.update_time.ToJsonString()
    current: Any = properties
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    return (isinstance(a, numbers) and isinstance(b, numbers)) or type(a) is type(b)


class _Parser:
    def __init__(self, text: str, index: RegistryIndex, ids: TenantIds) -> None:
        self._tokens = _tokens(text)
        self._at = 0
        self._terms = 0
        self._nesting = 0
        self._index = index
        self._ids = ids

    def peek(self) -> Token:
        return self._tokens[self._at]

    def next(self) -> Token:
        token = self._tokens[self._at]
        self._at += 1
        return token

    def accept(self, word: str) -> bool:
        if self.peek().word == word:
            self._at += 1
            return True
        return False

    def expect(self, word: str) -> None:
        token = self.next()
        if token.word != word:
            found = "the end" if token.kind == "end" else repr(token.text)
            raise QueryError(f"expected {word}, found {found}", token.position)

    def string(self) -> str:
        token = self.next()
        if token.kind != "string":
            raise QueryError("expected a quoted string", token.position)
        return _unquote(token)

    def parse(self) -> Query:
        traversal = None
        start_only = None
        if self.accept("FROM"):
            position = self.peek().position
            start = self.string()
            if not LOCAL_ID_PATTERN.fullmatch(start):
                raise QueryError(f"{start!r} is not a twin id", position)
            start = self._ids.inner(start)
            if self.accept("FOLLOW"):
                traversal = self._traversal(start)
            else:
                start_only = start
        predicate = None
        hints: Hints = ()
        if self.accept("WHERE"):
            predicate, hints = self._or()
        token = self.peek()
        if token.kind != "end":
            raise QueryError(f"unexpected {token.text!r}", token.position)
        narrowings = [h for h in hints if isinstance(h, Narrowing)]
        # Named ids are the fewest candidates there can be.
        narrowing = next((n for n in narrowings if n.kind == "id"), None) or next(
            iter(narrowings), None
        )
        conditions = tuple(h for h in hints if isinstance(h, PropertyCondition))
        return Query(traversal, start_only, predicate, narrowing, conditions)

    def _traversal(self, start: str) -> Traversal:
        names: list[str] = []
        if not self.accept("*"):
            while True:
                token = self.next()
                if (
                    token.kind != "path"
                    or "." in token.text
                    or token.text.startswith("$")
                    or token.word in _CLAUSE_KEYWORDS
                ):
                    raise QueryError("expected a relationship name or *", token.position)
                names.append(token.text)
                if not self.accept(","):
                    break
        incoming = self.accept("INCOMING")
        depth = 1
        if self.accept("DEPTH"):
            token = self.next()
            if token.kind != "number" or not token.text.isdigit():
                raise QueryError("DEPTH takes a whole number", token.position)
            depth = int(token.text)
            if not 1 <= depth <= MAX_DEPTH:
                raise QueryError(f"DEPTH is 1 to {MAX_DEPTH}", token.position)
        return Traversal(start, tuple(names), incoming, depth)

    def _count(self, position: int) -> None:
        self._terms += 1
        if self._terms > MAX_TERMS:
            raise QueryError(f"more than {MAX_TERMS} terms", position)

    # Each level returns its predicate and the hints every match of it satisfies (an
    # IS_OF_MODEL, $id = / IN, an indexable property comparison), so that such a query reads
    # only those twins.

    def _or(self) -> tuple[Predicate, Hints]:
        parts = [self._and()]
        while self.accept("OR"):
            parts.append(self._and())
        if len(parts) == 1:
            return parts[0]
        predicates = [p for p, _ in parts]
        return lambda twin, props: any(p(twin, props) for p in predicates), ()

    def _and(self) -> tuple[Predicate, Hints]:
        parts = [self._not()]
        while self.accept("AND"):
            parts.append(self._not())
        if len(parts) == 1:
            return parts[0]
        predicates = [p for p, _ in parts]
        implied = tuple(hint for _, hints in parts for hint in hints)
        return lambda twin, props: all(p(twin, props) for p in predicates), implied

    def _nest(self, position: int) -> None:
        self._nesting += 1
        if self._nesting > MAX_NESTING:
            raise QueryError(f"nested deeper than {MAX_NESTING}", position)

    def _not(self) -> tuple[Predicate, Hints]:
        token = self.peek()
        if self.accept("NOT"):
            self._nest(token.position)
            inner, _ = self._not()
            self._nesting -= 1
            return lambda twin, props: not inner(twin, props), ()
        return self._primary()

    def _primary(self) -> tuple[Predicate, Hints]:
        token = self.next()
        self._count(token.position)
        if token.text == "(":
            self._nest(token.position)
            inner = self._or()
            self.expect(")")
            self._nesting -= 1
            return inner
        if token.kind != "path":
            raise QueryError(
                f"expected a condition, found {token.text or 'the end'!r}", token.position
            )
        if self.peek().text == "(":
            return self._function(token)
        path = self._path(token)
        operator_token = self.peek()
        predicate, literals = self._comparison(path)
        if path == "$id" and operator_token.word in ("=", "IN"):
            return predicate, (Narrowing("id", tuple(v for v in literals if isinstance(v, str))),)
        condition = PropertyCondition(path, operator_token.word, tuple(literals))
        return predicate, (condition,) if indexable(condition) else ()

    def _path(self, token: Token) -> str:
        if token.text.startswith("$") and token.text not in METADATA:
            raise QueryError(
                f"unknown metadata {token.text}; known: {sorted(METADATA)}", token.position
            )
        return token.text

    def _function(self, name: Token) -> tuple[Predicate, Hints]:
        self.expect("(")
        word = name.word
        if word == "IS_OF_MODEL":
            position = self.peek().position
            model_id = self.string()
            if SEPARATOR in model_id:
                raise QueryError(f"{model_id!r} is not a model id", position)
            model_id = self._ids.inner(model_id)
            exact = False
            if self.accept(","):
                self.expect("EXACT")
                exact = True
            self.expect(")")
            narrowing = (Narrowing("model", (model_id,), exact),)
            if exact:
                return (lambda twin, _: twin.model_id == model_id), narrowing
            index = self._index
            return (lambda twin, _: index.is_a(twin.model_id, model_id)), narrowing
        if word == "IS_DEFINED":
            path = self._path(self.next())
            self.expect(")")
            return (lambda twin, props: _value_at(twin, props, path) is not None), ()
        if word == "STARTS_WITH":
            path = self._path(self.next())
            self.expect(",")
            prefix = self.string()
            self.expect(")")

            def starts_with(twin: Twin, props: dict[str, Any]) -> bool:
                value = _value_at(twin, props, path)
                return isinstance(value, str) and value.startswith(prefix)

            return starts_with, ()
        raise QueryError(
            f"unknown function {name.text}; known: IS_OF_MODEL, IS_DEFINED, STARTS_WITH",
            name.position,
        )

    def _literal(self) -> Any:
        token = self.next()
        if token.kind == "string":
            return _unquote(token)
        if token.kind == "number":
            value = float(token.text)
            if not math.isfinite(value):
                raise QueryError("number out of range", token.position)
            return int(token.text) if re.fullmatch(r"-?\d+", token.text) else value
        if token.word in ("TRUE", "FALSE"):
            return token.word == "TRUE"
        raise QueryError("expected a string, a number, TRUE or FALSE", token.position)

    def _comparison(self, path: str) -> tuple[Predicate, list[Any]]:
        """The comparison's predicate and its literals."""
        token = self.next()
        if token.word == "IN":
            self.expect("(")
            options = [self._literal()]
            while self.accept(","):
                options.append(self._literal())
                self._count(token.position)
            self.expect(")")

            def member(twin: Twin, props: dict[str, Any]) -> bool:
                value = _value_at(twin, props, path)
                return value is not None and any(
                    _comparable(value, o) and value == o for o in options
                )

            return member, options
        compare = _COMPARE.get(token.text)
        if compare is None:
            raise QueryError(f"expected a comparison after {path}", token.position)
        literal = self._literal()

        def comparison(twin: Twin, props: dict[str, Any]) -> bool:
            value = _value_at(twin, props, path)
            return value is not None and _comparable(value, literal) and compare(value, literal)

        return comparison, [literal]


def parse_query(text: str, index: RegistryIndex, ids: TenantIds) -> Query:
    """Parses a query of a caller of the tenant of ``ids``; InvalidArgumentError (with where
    and why) if it is not in the grammar."""
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"longer than {MAX_QUERY_CHARS} characters", 0)
    return _Parser(text, index, ids).parse()


def traverse(index: RegistryIndex, traversal: Traversal, max_visited: int) -> set[str]:
    """Ids of the twins reached from the start within the depth (the start itself excluded),
    each once however many paths or cycles lead to it."""
    names = set(traversal.relationships)
    visited = {traversal.start}
    frontier = [traversal.start]
    reached: set[str] = set()
    for _ in range(traversal.depth):
        following = []
        for twin_id in frontier:
            for edge in index.graph.relationships_of(twin_id, incoming=traversal.incoming):
                if names and edge.name not in names:
                    continue
                neighbour = edge.source_id if traversal.incoming else edge.target_id
                if neighbour in visited:
                    continue
                visited.add(neighbour)
                reached.add(neighbour)
                following.append(neighbour)
                if len(visited) > max_visited:
                    raise InvalidArgumentError(
                        "query too broad",
                        [FieldViolation("query", f"the traversal reaches more than "
                                        f"{max_visited} twins; follow fewer relationships or "
                                        "lower DEPTH")],
                    )  # fmt: skip
        frontier = following
    return reached


def _candidates(
    index: RegistryIndex,
    query: Query,
    after: str,
    max_visited: int,
    ids: TenantIds,
    *,
    page: int,
    max_scanned: int,
) -> Iterator[str]:
    """Ids that may match, in id order, after ``after``: as few as the query allows."""
    narrowing = query.narrowing
    if query.traversal is not None:
        reached = sorted(traverse(index, query.traversal, max_visited))
        return iter(reached[bisect.bisect_right(reached, after) :])
    if query.start_only is not None:
        return iter([query.start_only] if query.start_only > after else [])
    if narrowing is not None and narrowing.kind == "id":
        named = {ids.inner(i) for i in narrowing.values if SEPARATOR not in i}
        return iter(sorted(i for i in named if i > after))
    if narrowing is not None:
        (model_id,) = narrowing.values
        models = (
            [model_id]
            if narrowing.exact
            else [m for m in index.twins_of_model if index.is_a(m, model_id)]
        )
        # Each model's ids are kept sorted; merging them lazily costs one page, not the model.
        lists = [index.sorted_twins_of_model(m) for m in models]
        scanned = sum(len(twin_ids) for twin_ids in lists)
        scan: Iterator[str] = heapq.merge(
            *(itertools.islice(ids, bisect.bisect_right(ids, after), None) for ids in lists)
        )
    else:
        every = index.twin_ids(ids.tenant)
        scanned = len(every)
        scan = itertools.islice(every, bisect.bisect_right(every, after), None)

    def worth_it(matches: int) -> bool:
        # A scan finds a page of a common value after about page * scanned / matches twins;
        # the index reads every match and sorts them. It pays for the rare values.
        return matches <= max_scanned and matches * matches <= _INDEX_ADVANTAGE * page * scanned

    matching = index.property_indexes.candidates(query.conditions, worth_it)
    if matching is None:
        return scan
    return iter(sorted(i for i in matching if i > after))


def run_query(
    index: RegistryIndex,
    query: Query,
    after: str,
    limit: int,
    max_visited: int,
    *,
    ids: TenantIds,
    max_scanned: int = 50_000,
) -> tuple[list[Twin], str | None]:
    """Up to ``limit`` matching twins after ``after`` in id order, and the id the next page
    starts after (None: no more).

    A page looks at no more than ``max_scanned`` candidates: a filter that few twins pass would
    otherwise read the whole registry in one call, on the event loop. A page cut short by that
    budget may hold fewer twins than asked for (none, even) and still carry a continuation.
    """
    found: list[Twin] = []
    scanned = 0
    last_scanned = after
    candidates = _candidates(
        index, query, after, max_visited, ids, page=limit, max_scanned=max_scanned
    )
    for twin_id in candidates:
        if scanned == max_scanned:
            return found, last_scanned
        scanned += 1
        last_scanned = twin_id
        twin = index.twin(twin_id)
        # Every source of candidates stays in the tenant; this is the last line, not the only.
        if twin is None or not ids.owns(twin_id):
            continue
        if query.predicate is None or query.predicate(
            twin, index.plain_properties.get(twin_id, {})
        ):
            if len(found) == limit:
                return found, found[-1].id
            found.append(twin)
    return found, None
