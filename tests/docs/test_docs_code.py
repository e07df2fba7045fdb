"""The docs are tested like code: every code block either runs here or comes from a tested file.

Conventions for fenced blocks in ``README.md`` and ``docs/**/*.md`` (a block of any other
language fails):

* ``python``: executed, in page order, one namespace per page, in a temporary working folder
  whose ``../shared`` is the real data of the ``shared`` fixture (the root ``conftest.py``).
* ``text title="Output"`` right after a ``python`` block: that block's exact standard output.
* ``text title="$ prunekit ..."``: output of that command, run here (exit status 2 if the block
  starts with ``prunekit: error:``, else 0). Plain lines must appear in the real output; in a
  table (tabulate's dashed rule) the columns ``criterion``, ``step``, ``params`` and ``MACs``
  must match, the others (latency, metrics) vary by machine.
* other ``text``: free text such as a folder listing; ``mermaid``: a diagram.
* ``bash``: shell commands, never run; every ``prunekit`` command must parse with the real
  parser, ``run`` and ``compare`` must resolve to a valid configuration (tasks, criteria,
  schedules, presets, keys, values), and every ``pip install`` path must be in the repository.
* ``yaml``: a configuration file, validated by the runner against the toy task's schema.
* a block holding only ``--8<-- "path"`` lines includes that file verbatim (pymdownx.snippets):
  its ``title`` must be the path, and the file is tested where it lives.

``mkdocs build --strict`` itself is the last test.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
LANGUAGES = {"python", "text", "bash", "yaml", "toml", "mermaid"}
OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]*)(?P<attrs>.*)$")
TITLE = re.compile(r'title="([^"]*)"')
INCLUDE = re.compile(r'^--8<-- "([^"]+)"$')
STABLE_COLUMNS = {"criterion", "step", "params", "MACs"}


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    title: str | None
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def includes(self) -> list[str]:
        lines = [ln for ln in self.code.splitlines() if ln.strip()]
        found = [INCLUDE.match(ln) for ln in lines]
        return [m[1] for m in found if m] if lines and all(found) else []


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page``, dedented (blocks may sit inside admonitions)."""
    out, lines, i = [], page.read_text().splitlines(), 0
    while i < len(lines):
        m = OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        closing = re.compile(rf"^{re.escape(indent)}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            j += 1
        assert j < len(lines), f"{page}:{i + 1}: unclosed code block"
        body = [ln.removeprefix(indent) for ln in lines[i + 1 : j]]
        title = TITLE.search(m["attrs"])
        out.append(Block(page, i + 1, m["lang"], title and title[1], "\n".join(body) + "\n"))
        i = j + 1
    return out


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in blocks(page)]


def load_hooks():
    spec = importlib.util.spec_from_file_location("prunekit_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------- conventions
def test_every_block_follows_a_convention():
    assert PAGES, "no docs pages found"
    for block in all_blocks():
        assert block.lang in LANGUAGES, f"{block.where}: unknown block language {block.lang!r}"
        if block.includes:
            assert block.title in block.includes, f"{block.where}: title must be the included path"
            for path in block.includes:
                assert (ROOT / path).is_file(), f"{block.where}: {path} does not exist"
        elif block.lang == "toml":
            pytest.fail(f"{block.where}: toml blocks must include a tested file")


def test_output_blocks_follow_python_blocks():
    for page in PAGES:
        previous = None
        for block in blocks(page):
            if block.lang == "text" and block.title == "Output":
                assert previous is not None and previous.lang == "python", (
                    f"{block.where}: an Output block must follow a python block"
                )
            previous = block


def test_every_config_key_is_described():
    hooks = load_hooks()
    missing = [key for key, field in hooks.config_keys() if not field.description]
    assert missing == [], "describe these keys where they are declared"


# ---------------------------------------------------------------------- python blocks
def python_pages() -> list[Path]:
    return [p for p in PAGES if any(b.lang == "python" and not b.includes for b in blocks(p))]


@pytest.mark.parametrize("page", python_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page, tmp_path, monkeypatch, request):
    page_blocks = blocks(page)
    source = "".join(b.code for b in page_blocks if b.lang == "python")
    if "prunekit_face" in source:
        pytest.importorskip("prunekit_face")
    work = tmp_path / "work"
    work.mkdir()
    if "../shared" in source:  # the real data, as the repository's conftest finds it
        (tmp_path / "shared").symlink_to(request.getfixturevalue("shared"))
    monkeypatch.chdir(work)
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path / "cache"))
    namespace: dict = {"__name__": "__docs__"}
    last_output = None
    for block in page_blocks:
        if block.lang == "python" and not block.includes:
            code = compile("\n" * block.line + block.code, str(page), "exec")
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(code, namespace)
            last_output = out.getvalue()
        elif block.lang == "text" and block.title == "Output":
            assert last_output is not None
            assert last_output.rstrip() == block.code.rstrip(), f"{block.where}: output differs"


# ---------------------------------------------------------------------- shell commands
def commands(block: Block) -> list[list[str]]:
    """The simple commands of a bash block (continuations joined, env assignments dropped)."""
    text = re.sub(r"\\\n", " ", block.code)
    out = []
    for line in text.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        for part in re.split(r"&&|;|\|\|", line):
            words = shlex.split(part)
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                words.pop(0)
            if words:
                out.append(words)
    return out


def check_prunekit(argv: list[str], where: str) -> None:
    """``argv`` parses; ``run``/``compare`` resolve to a valid configuration, as the CLI would."""
    from prunekit.cli.main import _parser, _resolve
    from prunekit.errors import PrunekitError
    from prunekit.registry import registry

    with contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            args = _parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: `prunekit {shlex.join(argv)}` does not parse: {err.getvalue()}")
    if args.command.__name__ not in ("_run", "_compare") or not args.task:
        return  # other commands read files that a page creates first (runs, checkpoints)
    for name in (getattr(args, "criteria", None) or "").split(","):
        assert not name or name in registry("criteria").names(), f"{where}: unknown {name!r}"
    try:
        _resolve(args)  # names, keys, types, ranges, target, preset: everything but files
    except PrunekitError as exc:
        pytest.fail(f"{where}: `prunekit {shlex.join(argv)}`: {exc}")


def check_pip(words: list[str], where: str) -> None:
    for word in words[2:]:
        if word.startswith("-") or not ("/" in word or word.startswith(".")):
            continue
        path = re.sub(r"\[.*\]$", "", word)
        assert (ROOT / path).is_dir(), f"{where}: pip installs {path}, which is not in the repo"


def test_shell_commands_match_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for block in all_blocks():  # config files the commands name, e.g. --config my-config.yaml
        if block.lang == "yaml" and (block.title or "").endswith(".yaml"):
            (tmp_path / block.title).write_text(block.code)
    # commands run from the repository root name its shipped configs
    shutil.copytree(ROOT / "plugins" / "face" / "configs", tmp_path / "plugins/face/configs")
    failing = {  # commands a page shows failing on purpose (their output block is checked)
        b.title[2:]
        for b in all_blocks()
        if (b.title or "").startswith("$ ") and b.code.startswith("prunekit: error:")
    }
    checked = 0
    for block in all_blocks():
        if block.lang != "bash":
            continue
        moved = False  # after a `cd`, paths are no longer relative to the repository root
        for words in commands(block):
            if words[0] == "cd":
                moved = True
            elif words[0] == "prunekit" and shlex.join(words) not in failing:
                check_prunekit(words[1:], block.where)
                checked += 1
            elif words[:2] == ["pip", "install"] and not moved:
                check_pip(words, block.where)
    assert checked, "no prunekit commands found in the docs"


def test_yaml_blocks_are_valid_configs(tmp_path):
    pytest.importorskip("prunekit_toy")
    from prunekit.runner.config import resolve

    for block in all_blocks():
        if block.lang == "yaml" and not block.includes:
            path = tmp_path / "config.yaml"
            path.write_text(block.code)
            assert isinstance(yaml.safe_load(block.code), dict), block.where
            resolve("toy", path)  # raises PrunekitError naming the bad key


# ---------------------------------------------------------------------- command output
def output_blocks(slow: bool) -> list[Block]:
    found = [b for b in all_blocks() if b.lang == "text" and (b.title or "").startswith("$ ")]
    return [b for b in found if (" compare " in b.title) == slow]


def table(lines: list[str]) -> tuple[int, int, list[dict[str, str]]] | None:
    """``(first line, end line, rows)`` of the first tabulate "simple" table in ``lines``."""
    for i, line in enumerate(lines):
        if i and re.fullmatch(r"-+( +-+)+", line.strip()):
            spans = [m.span() for m in re.finditer(r"-+", line)]
            end = i + 1
            while end < len(lines) and lines[end].strip():
                end += 1
            names = [lines[i - 1][a:b].strip() or str(k) for k, (a, b) in enumerate(spans)]
            rows = [
                {name: row[a:b].strip() for name, (a, b) in zip(names, spans)}
                for row in lines[i + 1 : end]
            ]
            return i - 1, end, rows
    return None


def check_output(block: Block, monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    from prunekit.cli.main import main

    argv = shlex.split(block.title[2:])
    assert argv[0] == "prunekit", f"{block.where}: only prunekit commands can be checked"
    monkeypatch.chdir(work)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = main(argv[1:])
    failing = block.code.startswith("prunekit: error:")  # the page shows an error on purpose
    assert status == (2 if failing else 0), f"{block.where}: exit status {status}"
    real, shown = out.getvalue().splitlines(), block.code.rstrip().splitlines()
    shown_table, real_table = table(shown), table(real)
    if shown_table:
        assert real_table, f"{block.where}: the command printed no table"
        start, end, rows = shown_table
        real_rows = real_table[2]
        assert len(rows) == len(real_rows), f"{block.where}: row count differs"
        assert rows and list(rows[0]) == list(real_rows[0]), f"{block.where}: columns differ"
        for row, real_row in zip(rows, real_rows):
            for column in STABLE_COLUMNS & set(row):
                assert row[column] == real_row[column], f"{block.where}: {column} differs"
        shown = shown[:start] + shown[end:]
    for line in shown:
        if line.strip() and not re.fullmatch(r"-+( +-+)+", line.strip()):
            assert line in real, f"{block.where}: {line!r} is not in the real output"


@pytest.mark.parametrize("block", output_blocks(slow=False), ids=lambda b: b.where)
def test_command_output(block, tmp_path, monkeypatch):
    check_output(block, monkeypatch, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("block", output_blocks(slow=True), ids=lambda b: b.where)
def test_compare_output(block, tmp_path, monkeypatch):
    check_output(block, monkeypatch, tmp_path)


# ---------------------------------------------------------------------- the site
@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # Material's end-of-life banner
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert not re.search(r"^(WARNING|ERROR)\b", log, re.MULTILINE), log
    assert (tmp_path / "site" / "index.html").is_file()
    assert time.perf_counter() - started < 300
