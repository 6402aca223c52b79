"""The README's claims hold: its runnable code, its ``make`` targets, commands and links.

Python blocks that the README marks with ``<!-- test: run -->`` on the line before their fence
are executed in order in one namespace, in a temporary working directory; unmarked blocks (which
need weights, a network connection, the user's images or minutes) are only checked to compile.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUN_MARKER = "<!-- test: run -->"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
MAKE_TARGET = re.compile(r"(?<![\w-])make ([a-z][\w-]*)")
CLI_COMMAND = re.compile(r"(?<![\w-])keras-efficient ([a-z][\w-]*)")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _text() -> str:
    return README.read_text(encoding="utf-8")


def _blocks(text: str) -> list[tuple[str, str, bool]]:
    """``(language, code, marked)`` of every fenced block, in order."""
    blocks = []
    for match in FENCE.finditer(text):
        before = text[:match.start()].rstrip().splitlines()
        marked = bool(before) and before[-1].strip() == RUN_MARKER
        blocks.append((match.group(1), match.group(2), marked))
    return blocks


def _code_text(text: str) -> str:
    """Everything the README shows as code: fenced blocks and inline code spans."""
    fenced = [code for _, code, _ in _blocks(text)]
    prose = FENCE.sub("", text)
    return "\n".join([*fenced, *INLINE_CODE.findall(prose)])


def test_marked_python_blocks_run(tmp_path, monkeypatch):
    blocks = [code for language, code, marked in _blocks(_text())
              if marked and language == "python"]
    assert len(blocks) >= 3, "the README lost its runnable examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme"}
    for index, code in enumerate(blocks):
        exec(compile(code, f"README.md:runnable block {index}", "exec"), namespace)


def test_every_marker_precedes_a_python_block():
    lines = _text().splitlines()
    for number, line in enumerate(lines):
        if line.strip() == RUN_MARKER:
            following = next((text for text in lines[number + 1:] if text.strip()), "")
            assert following.startswith("```python"), f"README line {number + 1}: {following!r}"


def test_unmarked_python_blocks_compile():
    for index, (language, code, marked) in enumerate(_blocks(_text())):
        if language == "python" and not marked:
            compile(code, f"README.md:block {index}", "exec")


def test_make_targets_exist():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.MULTILINE))
    mentioned = set(MAKE_TARGET.findall(_code_text(_text())))
    assert {"demo", "test", "export-tflite", "test-notebooks"} <= mentioned
    assert mentioned <= targets, f"README names unknown make targets {mentioned - targets}"


def test_cli_commands_exist():
    from keras_efficient.cli import build_parser

    parser = build_parser()
    commands = {name for action in parser._actions
                if isinstance(action, argparse._SubParsersAction) for name in action.choices}
    mentioned = set(CLI_COMMAND.findall(_code_text(_text())))
    assert {"list", "export", "bench", "train", "eval"} <= mentioned
    assert mentioned <= commands, f"README names unknown commands {mentioned - commands}"


def test_linked_files_exist():
    links = {link for link in LINK.findall(_text()) if "://" not in link}
    assert sum(link.startswith("docs/") and link.endswith(".md") for link in links) >= 10
    missing = sorted(link for link in links if not (ROOT / link).exists())
    assert not missing, f"README links to missing files: {missing}"
