"""Every command line and Python block in the README and docs/ is one the CLI and Python
accept (tests/e2e/test_readme.py runs the README's against a platform)."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from docs_blocks import DOCUMENTS, Block, blocks, shell_commands, twinstack_arguments
from typer._click.exceptions import UsageError

from twinstack.cli.main import app

CLI = typer.main.get_command(app)
PYTHON_BLOCKS = [block for path in DOCUMENTS for block in blocks(path, "python")]
COMMANDS = [
    (block, command)
    for path in DOCUMENTS
    for block in blocks(path, "bash")
    for command in shell_commands(block)
    if twinstack_arguments(command) is not None
]


def parse(arguments: list[str]) -> None:
    """Resolves the command and checks its arguments and options, without running it."""
    command: Any = CLI
    context = command.make_context("twinstack", list(arguments))
    while hasattr(command, "resolve_command"):
        # A group leaves the command name in its protected arguments, the rest in args.
        remaining = [*context._protected_args, *context.args]
        if not remaining:
            break
        _, command, rest = command.resolve_command(context, remaining)
        context = command.make_context(command.name, rest, parent=context)


def test_the_docs_have_code() -> None:
    assert len(COMMANDS) >= 25
    assert len(PYTHON_BLOCKS) >= 3


@pytest.mark.parametrize(
    ("block", "command"), COMMANDS, ids=[f"{b.where}:{c[:60]}" for b, c in COMMANDS]
)
def test_every_cli_line_parses(block: Block, command: str) -> None:
    arguments = twinstack_arguments(command)
    assert arguments is not None
    parse(arguments)


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.where for b in PYTHON_BLOCKS])
def test_every_python_block_compiles(block: Block) -> None:
    compile(block.text, block.where, "exec")


def test_a_wrong_command_line_would_be_caught() -> None:
    with pytest.raises(UsageError):
        parse(["sim", "sweep", "--scenarios", "100000"])
    with pytest.raises(UsageError):
        parse(["history"])  # a twin is required
