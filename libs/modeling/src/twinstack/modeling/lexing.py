"""Tokenizing user text (model expressions, registry queries) with one regular expression of
named groups: the first step of every parser of user input, which never evaluates it."""

from __future__ import annotations

import re
from dataclasses import dataclass


class UnexpectedCharacterError(ValueError):
    """Text that no token of the grammar starts with."""

    def __init__(self, character: str, position: int) -> None:
        super().__init__(f"unexpected character {character!r}")
        self.character = character
        self.position = position


@dataclass(frozen=True)
class Token:
    kind: str  # the name of the group that matched, or "end"
    text: str
    position: int

    @property
    def word(self) -> str:
        """The text, upper-cased for names (so keywords are case-insensitive)."""
        return self.text.upper() if self.kind in ("name", "path") else self.text


def tokenize(pattern: re.Pattern[str], text: str) -> list[Token]:
    """Tokens of ``text`` (white space between them skipped), ending with an "end" token.

    ``pattern`` matches optional leading white space and then one token in a named group.
    """
    tokens: list[Token] = []
    position = 0
    while position < len(text) and not text[position:].isspace():
        match = pattern.match(text, position)
        if match is None or match.end() == position or match.lastgroup is None:
            start = position + len(text[position:]) - len(text[position:].lstrip())
            raise UnexpectedCharacterError(text[start], start)
        kind = match.lastgroup
        tokens.append(Token(kind, match.group(kind), match.start(kind)))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens
