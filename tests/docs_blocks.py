"""The code in the README and docs/: fenced blocks, and the command lines in them."""

from __future__ import annotations

import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path, language: str) -> list[Block]:
    text = path.read_text()
    return [
        Block(path, text.count("\n", 0, match.start()) + 1, match.group(1), match.group(2))
        for match in _FENCE.finditer(text)
        if match.group(1) == language
    ]


def _without_comment(line: str) -> str:
    """The line up to its comment, exactly as written (quotes and substitutions intact)."""
    stream = io.StringIO(line)
    lexer = shlex.shlex(stream, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    end = 0
    while lexer.get_token() is not None:
        end = stream.tell()
    return line[:end].rstrip()


def shell_commands(block: Block) -> list[str]:
    """The commands of a bash block: continuations joined, comments dropped, ``&&`` split. A
    line without ``&&`` is kept as written, for the shell to expand as a user's would."""
    joined = block.text.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if "&&" not in words:
            commands.append(_without_comment(line))
            continue
        current: list[str] = []
        for word in [*words, "&&"]:
            if word == "&&":
                if current:
                    commands.append(shlex.join(current))
                current = []
            else:
                current.append(word)
    return commands


def twinstack_arguments(command: str) -> list[str] | None:
    """The CLI arguments of a ``twinstack`` (or ``uv run twinstack``) command, else None."""
    words = shlex.split(command)
    if words[:3] == ["uv", "run", "twinstack"]:
        return words[3:]
    if words[:1] == ["twinstack"]:
        return words[1:]
    return None
