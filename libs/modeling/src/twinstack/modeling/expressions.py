"""The whitelisted expression grammar of model dynamics.

Equations, outputs and conditions are user text. They are tokenised and parsed here into a
small typed AST; nothing of them ever reaches ``eval`` or ``exec``. The registry validates models
with this parser and the simulation service compiles the same AST to numba code.

Grammar (lowest precedence first)::

    expr    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
    sum     := term (("+" | "-") term)*
    term    := unary (("*" | "/") unary)*
    unary   := ("-" | "+") unary | power
    power   := atom (("^" | "**") unary)?
    atom    := NUMBER | NAME | NAME "(" expr ("," expr)* ")" | "(" expr ")"
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from twinstack.modeling.functions import FUNCTIONS
from twinstack.modeling.lexing import Token, UnexpectedCharacterError, tokenize

MAX_EXPRESSION_CHARS = 2000
MAX_EXPRESSION_NODES = 400
MAX_EXPRESSION_DEPTH = 40
# Nesting of the parsed tree as compiled kernels write it: every operation in parentheses but a
# chain of one precedence (a + b - c), which stays flat. Python's parser stops at 200 nested
# parentheses, and numba's compiler recurses over the tree.
MAX_TREE_DEPTH = 100
# Operators whose left operand, of the same group, needs no parentheses: (a + b) - c == a + b - c.
LEFT_CHAINS: tuple[frozenset[str], ...] = (
    frozenset({"+", "-"}),
    frozenset({"*", "/"}),
    frozenset({"and"}),
    frozenset({"or"}),
)


def continues_chain(node: Binary) -> bool:
    """Whether ``node``'s left operand is an operation of its own chain (written unwrapped)."""
    left = node.left
    return isinstance(left, Binary) and any(
        node.op in chain and left.op in chain for chain in LEFT_CHAINS
    )


COMPARISONS = frozenset({"<", "<=", ">", ">=", "==", "!="})
KEYWORDS = frozenset({"and", "or", "not"})

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|<=|>=|==|!=|[-+*/^<>(),]))"
)


class ExpressionError(ValueError):
    """An expression is not in the grammar; ``position`` is the character offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at character {position})")
        self.position = position


@dataclass(frozen=True)
class Number:
    value: float


@dataclass(frozen=True)
class Name:
    name: str


@dataclass(frozen=True)
class Unary:
    op: str  # "-", "+" or "not"
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str  # "+", "-", "*", "/", "^", a comparison, "and" or "or"
    left: Node
    right: Node


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Node, ...]


Node = Number | Name | Unary | Binary | Call


def _tokens(text: str) -> list[Token]:
    try:
        return tokenize(_TOKEN, text)
    except UnexpectedCharacterError as error:
        raise ExpressionError(str(error), error.position) from None


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = _tokens(text)
        self._index = 0
        self._nodes = 0
        self._depth = 0

    def parse(self) -> Node:
        node = self._or()
        token = self._peek()
        if token.kind != "end":
            raise ExpressionError(f"unexpected {token.text!r}", token.position)
        return node

    def _peek(self) -> Token:
        return self._tokens[self._index]

    def _next(self) -> Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def _accept(self, *texts: str) -> Token | None:
        token = self._peek()
        if token.kind in ("op", "name") and token.text in texts:
            self._index += 1
            return token
        return None

    def _expect(self, text: str) -> None:
        token = self._next()
        if token.text != text:
            found = "the end" if token.kind == "end" else repr(token.text)
            raise ExpressionError(f"expected {text!r}, found {found}", token.position)

    def _node(self, node: Node, position: int) -> Node:
        self._nodes += 1
        if self._nodes > MAX_EXPRESSION_NODES:
            raise ExpressionError(f"more than {MAX_EXPRESSION_NODES} terms", position)
        return node

    def _nested(self, position: int) -> None:
        self._depth += 1
        if self._depth > MAX_EXPRESSION_DEPTH:
            raise ExpressionError(f"nested deeper than {MAX_EXPRESSION_DEPTH}", position)

    def _or(self) -> Node:
        node = self._and()
        while (token := self._accept("or")) is not None:
            node = self._node(Binary("or", node, self._and()), token.position)
        return node

    def _and(self) -> Node:
        node = self._not()
        while (token := self._accept("and")) is not None:
            node = self._node(Binary("and", node, self._not()), token.position)
        return node

    def _not(self) -> Node:
        token = self._accept("not")
        if token is None:
            return self._compare()
        self._nested(token.position)
        node = self._node(Unary("not", self._not()), token.position)
        self._depth -= 1
        return node

    def _compare(self) -> Node:
        node = self._sum()
        token = self._accept(*COMPARISONS)
        if token is not None:
            node = self._node(Binary(token.text, node, self._sum()), token.position)
            if self._peek().text in COMPARISONS:
                raise ExpressionError(
                    "chained comparisons are ambiguous; join them with 'and'",
                    self._peek().position,
                )
        return node

    def _sum(self) -> Node:
        node = self._term()
        while (token := self._accept("+", "-")) is not None:
            node = self._node(Binary(token.text, node, self._term()), token.position)
        return node

    def _term(self) -> Node:
        node = self._unary()
        while (token := self._accept("*", "/")) is not None:
            node = self._node(Binary(token.text, node, self._unary()), token.position)
        return node

    def _unary(self) -> Node:
        token = self._accept("-", "+")
        if token is None:
            return self._power()
        self._nested(token.position)
        node = self._node(Unary(token.text, self._unary()), token.position)
        self._depth -= 1
        return node

    def _power(self) -> Node:
        node = self._atom()
        token = self._accept("^", "**")
        if token is not None:
            # Right-associative: a ^ b ^ c nests like parentheses do.
            self._nested(token.position)
            node = self._node(Binary("^", node, self._unary()), token.position)
            self._depth -= 1
        return node

    def _atom(self) -> Node:
        token = self._next()
        if token.kind == "number":
            value = float(token.text)
            if not math.isfinite(value):
                raise ExpressionError("number out of range", token.position)
            return self._node(Number(value), token.position)
        if token.kind == "name" and token.text not in KEYWORDS:
            if self._accept("(") is None:
                return self._node(Name(token.text), token.position)
            return self._call(token)
        if token.text == "(":
            self._nested(token.position)
            node = self._or()
            self._expect(")")
            self._depth -= 1
            return node
        found = "the end" if token.kind == "end" else repr(token.text)
        raise ExpressionError(f"expected a number, a name or '(', found {found}", token.position)

    def _call(self, name: Token) -> Node:
        function = FUNCTIONS.get(name.text)
        arity = None if function is None else (function.min_args, function.max_args)
        if arity is None:
            raise ExpressionError(
                f"unknown function {name.text!r}; known: {', '.join(sorted(FUNCTIONS))}",
                name.position,
            )
        self._nested(name.position)
        args = [self._or()]
        while self._accept(",") is not None:
            args.append(self._or())
        self._expect(")")
        self._depth -= 1
        low, high = arity
        if not low <= len(args) <= high:
            expected = str(low) if low == high else f"{low} to {high}"
            raise ExpressionError(
                f"{name.text}() takes {expected} arguments, not {len(args)}", name.position
            )
        return self._node(Call(name.text, tuple(args)), name.position)


def parse_expression(text: str) -> Node:
    """Parses ``text``; raises ExpressionError saying where and why it is not in the grammar."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"longer than {MAX_EXPRESSION_CHARS} characters", 0)
    if not text.strip():
        raise ExpressionError("empty expression", 0)
    node = _Parser(text).parse()
    if tree_depth(node) > MAX_TREE_DEPTH:
        raise ExpressionError(
            f"operations nest more than {MAX_TREE_DEPTH} deep; split it into outputs", 0
        )
    return node


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Call):
        return node.args
    return ()


def tree_depth(node: Node) -> int:
    """Levels of nesting as compiled (see :data:`MAX_TREE_DEPTH`), found without recursion."""
    deepest = 0
    stack = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(current, Binary) and continues_chain(current):
            stack += [(current.left, depth), (current.right, depth + 1)]
        else:
            stack.extend((child, depth + 1) for child in _children(current))
    return deepest


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children."""
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(_children(current)))


def names_in(node: Node) -> set[str]:
    """The variable names an expression reads."""
    return {n.name for n in walk(node) if isinstance(n, Name)}


def is_boolean(node: Node) -> bool:
    """Whether the expression yields a truth value (a comparison or a logical operation)."""
    if isinstance(node, Binary):
        return node.op in COMPARISONS or node.op in ("and", "or")
    if isinstance(node, Unary):
        return node.op == "not"
    if isinstance(node, Call) and node.function == "where":
        return is_boolean(node.args[1]) and is_boolean(node.args[2])
    return False


def type_errors(node: Node) -> list[str]:
    """Where truth values and numbers are mixed up, e.g. ``x + (y > 1)`` or ``where(x, 1, 2)``."""
    errors: list[str] = []
    for current in walk(node):
        if isinstance(current, Binary):
            logical = current.op in ("and", "or")
            for side in (current.left, current.right):
                if logical and not is_boolean(side):
                    errors.append(f"'{current.op}' needs truth values on both sides")
                elif not logical and is_boolean(side):
                    errors.append(f"'{current.op}' needs numbers, not a truth value")
        elif isinstance(current, Unary):
            if (current.op == "not") != is_boolean(current.operand):
                errors.append(f"'{current.op}' is applied to the wrong kind of value")
        elif isinstance(current, Call):
            if current.function == "where":
                if not is_boolean(current.args[0]):
                    errors.append("the first argument of where() must be a condition")
                if is_boolean(current.args[1]) != is_boolean(current.args[2]):
                    errors.append("both branches of where() must be of one kind")
            elif any(is_boolean(arg) for arg in current.args):
                errors.append(f"{current.function}() needs numbers, not truth values")
    return errors
