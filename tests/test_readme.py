"""The README (and any docs/*.md) against the code, so that drift fails a test:

- every ``speakerswitch COMMAND --flag`` in a code block or inline code is a flag of that
  command, every ``make TARGET VAR=...`` a Makefile target whose recipe uses ``$(VAR)``,
  and every flag of every command is in the CLI table's row of that command;
- the Quickstart's commands, run as written (into a temporary directory instead of /tmp),
  print the output the README shows;
- each Python snippet written against ``make run`` (127.0.0.1:50051) runs against a real
  server and prints exactly the lines under its ``# prints:``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re
import shlex
import subprocess
import sys
import textwrap

import pytest

from service import cli

from conftest import ServerThread, test_config

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
MAKE_ADDRESS = "127.0.0.1:50051"  # where `make run` serves gRPC

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<lang>[^\n`]*)\n"
                   r"(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$", re.S | re.M)
INLINE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)


@dataclasses.dataclass
class Block:
    file: str
    line: int  # of the block's first line
    lang: str
    body: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclasses.dataclass
class Doc:
    blocks: list[Block]
    inline: list[tuple[str, str]]  # (file:line, code)
    text: str  # all the files, for "is it mentioned at all"


def read_docs() -> Doc:
    blocks, inline, texts = [], [], []
    for path in DOC_FILES:
        text = path.read_text()
        texts.append(text)
        name = path.relative_to(ROOT)
        for m in FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 2
            blocks.append(Block(str(name), line, m["lang"].strip(),
                                textwrap.dedent(m["body"])))
        # inline code outside the fences (blanked out, keeping the line numbers)
        prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for m in INLINE.finditer(prose):
            line = prose.count("\n", 0, m.start()) + 1
            inline.append((f"{name}:{line}", " ".join(m[2].split())))
    return Doc(blocks, inline, "\n".join(texts))


DOC = read_docs()


# --- the CLI, from its argparse parser ----------------------------------------------------

def cli_commands() -> dict[str, argparse.ArgumentParser]:
    """Every leaf command ("serve", "token create", ...) and its parser."""
    out: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs and path:
            out[path] = parser
        for action in subs:
            for name, sub in action.choices.items():
                walk(sub, f"{path} {name}".strip())

    walk(cli.build_parser(), "")
    return out


COMMANDS = cli_commands()


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def documented_options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions if not isinstance(a, argparse._HelpAction)
            for s in a.option_strings}


def match_command(words: list[str]) -> tuple[str, int] | None:
    """The longest command ("token create" before "token") that ``words`` start with, and
    how many words it takes."""
    for n in (2, 1):
        if " ".join(words[:n]) in COMMANDS:
            return " ".join(words[:n]), n
    return None


FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def flags_in(words: list[str]) -> list[str]:
    """The flags among a command's words: ``[--plot``, ``--out=x``, ``(--levels`` ..."""
    return [m[1] for w in words for m in [FLAG.match(w.lstrip("[(\"'"))] if m]


# --- code, split into commands ----------------------------------------------------------

SEPARATORS = re.compile(r"&&|\|\||;|\$\(|(?<!\\)\|")


def pieces(code: str) -> list[str]:
    """Shell-ish commands in a code text: per line, the code and its ``#`` comment apart,
    split at ``&&``, ``;``, ``$(`` and unescaped pipes (``\\|`` is alternation in a table)."""
    out = []
    for line in code.splitlines():
        code_part, _, comment = line.partition(" #") if not line.lstrip().startswith("#") \
            else ("", "", line.lstrip()[1:])
        for part in (code_part, comment):
            out.extend(p.strip() for p in SEPARATORS.split(part) if p.strip())
    return out


def split_words(piece: str) -> list[str]:
    try:
        return shlex.split(piece)
    except ValueError:  # an apostrophe in prose
        return piece.split()


def speakerswitch_uses(piece: str, bare: bool = False) -> list[tuple[str, list[str], str]]:
    """(command, flags, text) for each ``speakerswitch COMMAND ...`` in a piece; with
    ``bare``, a piece that starts with a command name (``serve --workers 2``) counts too.
    A command the CLI does not have comes back as ``"?" + its words``."""
    words = piece.split()
    uses = []
    starts = [i + 1 for i, w in enumerate(words)
              if w.lstrip("([").rsplit("/", 1)[-1] == "speakerswitch"]
    if bare and words and words[0] in {c.split()[0] for c in COMMANDS}:
        starts.insert(0, 0)
    for start in starts:
        found = match_command(words[start:])
        if found is None:
            if start < len(words) and re.fullmatch(r"[a-z][a-z-]*", words[start]):
                uses.append(("?" + " ".join(words[start:start + 2]), [], piece))
            continue
        command, n = found
        rest = words[start + n:]
        end = next((i for i, w in enumerate(rest) if w.rsplit("/", 1)[-1] == "speakerswitch"),
                   len(rest))
        uses.append((command, flags_in(rest[:end]), piece))
    return uses


def code_texts() -> list[tuple[str, str, bool]]:
    """(where, code, is_inline) for every code block and inline code span."""
    return ([(b.where, b.body, False) for b in DOC.blocks]
            + [(where, code, True) for where, code in DOC.inline])


# --- the Makefile ---------------------------------------------------------------------------

def makefile() -> tuple[dict[str, str], set[str]]:
    """{target: its recipe} and the variables it assigns."""
    targets: dict[str, str] = {}
    variables: set[str] = set()
    current: list[str] = []
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("\t"):
            for t in current:
                targets[t] += line + "\n"
            continue
        if m := re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?:\?|:|\+|::)?=", line):
            variables.add(m[1])
            current = []
        elif m := re.match(r"^([A-Za-z0-9_.-]+(?:\s+[A-Za-z0-9_.-]+)*)\s*:(?!=)", line):
            current = [t for t in m[1].split() if not t.startswith(".")]
            for t in current:
                targets.setdefault(t, "")
        elif line.strip() and not line.startswith("#"):
            current = []
    return targets, variables


TARGETS, MAKE_VARIABLES = makefile()


def make_uses(piece: str) -> list[tuple[str, dict[str, str]]]:
    """(target, {VAR: value}) for each ``make TARGET [VAR=value ...]`` in a piece."""
    words = split_words(piece)
    uses = []
    for i, w in enumerate(words):
        if w.lstrip("([") == "make" and i + 1 < len(words) \
                and re.fullmatch(r"[a-z][\w-]*", words[i + 1]):
            assigned = {}
            for v in words[i + 2:]:
                if m := re.fullmatch(r"([A-Z_][A-Z0-9_]*)=(.*)", v, re.S):
                    assigned[m[1]] = m[2]
                else:
                    break
            uses.append((words[i + 1], assigned))
    return uses


# --- 1. named things exist, and every flag is documented -----------------------------------

def test_the_docs_name_only_flags_the_cli_has():
    problems, seen = [], 0
    all_options = set().union(*(options(p) for p in COMMANDS.values()))
    for where, code, inline in code_texts():
        for piece in pieces(code):
            for command, flags, text in speakerswitch_uses(piece, bare=inline):
                seen += 1
                if command.startswith("?"):
                    problems.append(f"{where}: speakerswitch has no command {command[1:]!r} "
                                    f"(in {text!r})")
                    continue
                for flag in flags:
                    if flag not in options(COMMANDS[command]):
                        problems.append(f"{where}: `speakerswitch {command}` has no {flag} "
                                        f"(in {text!r})")
        # a flag on its own (`--jwt-secret-file`) must belong to some command
        if inline and code.startswith("-"):
            for flag in flags_in(code.split()):
                if flag not in all_options:
                    problems.append(f"{where}: no speakerswitch command has {flag} "
                                    f"(in {code!r})")
    assert seen > 20, "the README's speakerswitch commands were not found: parser broken?"
    assert not problems, "\n".join(problems)


def test_the_docs_name_only_make_targets_and_variables_the_makefile_has():
    problems, seen = [], 0
    for where, code, _ in code_texts():
        for piece in pieces(code):
            for target, assigned in make_uses(piece):
                seen += 1
                if target not in TARGETS:
                    problems.append(f"{where}: the Makefile has no target {target!r} "
                                    f"(in {piece!r})")
                    continue
                recipe = TARGETS[target]
                for var, value in assigned.items():
                    if f"$({var})" not in recipe:
                        problems.append(f"{where}: `make {target}` does not use {var} "
                                        f"(its recipe has no $({var}); in {piece!r})")
                        continue
                    # flags passed through to speakerswitch must be that command's
                    for line in recipe.splitlines():
                        if f"$({var})" in line:
                            for command, _, _ in speakerswitch_uses(line):
                                if command not in COMMANDS:
                                    problems.append(f"Makefile: make {target} runs "
                                                    f"speakerswitch {command[1:]}: no such "
                                                    "command")
                                    continue
                                for flag in flags_in(value.split()):
                                    if flag not in options(COMMANDS[command]):
                                        problems.append(
                                            f"{where}: {var} goes to `speakerswitch "
                                            f"{command}`, which has no {flag}")
    assert seen > 10, "the README's make commands were not found: parser broken?"
    assert {"run", "test", "demo"} <= TARGETS.keys()
    assert not problems, "\n".join(problems)


def test_make_run_and_make_demo_take_extra_arguments():
    for target, var, command in (("run", "RUN_ARGS", "serve"), ("demo", "DEMO_ARGS", "demo")):
        assert var in MAKE_VARIABLES, f"the Makefile should define {var} ?="
        assert re.search(rf"speakerswitch {command}\b.*\$\({var}\)", TARGETS[target]), \
            f"make {target} should pass $({var}) to speakerswitch {command}"


def cli_table_rows() -> dict[str, str]:
    """{command: the text of its CLI table rows' first cells} over the README and docs/."""
    rows: dict[str, str] = {}
    for line in DOC.text.splitlines():
        if not line.startswith("|"):
            continue
        first_cell = re.split(r"(?<!\\)\|", line)[1]
        for m in INLINE.finditer(first_cell):
            words = m[2].split()
            if words and words[0] == "speakerswitch" and (found := match_command(words[1:])):
                rows[found[0]] = rows.get(found[0], "") + " " + first_cell
    return rows


def test_every_command_and_flag_is_in_the_cli_table():
    rows = cli_table_rows()
    problems = []
    for command, parser in COMMANDS.items():
        if command not in rows:
            problems.append(f"no CLI table row starts with `speakerswitch {command}`")
            continue
        for flag in sorted(documented_options(parser)):
            if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", rows[command]):
                problems.append(f"the CLI table row of `speakerswitch {command}` lacks {flag}")
        for a in parser._actions:
            if not a.option_strings and not isinstance(a, argparse._SubParsersAction):
                name = a.metavar or a.dest.upper()
                if name not in rows[command]:
                    problems.append(f"the CLI table row of `speakerswitch {command}` lacks "
                                    f"its argument {name}")
    assert not problems, "\n".join(problems)


def test_speakerswitch_help_is_plain_text_and_every_command_has_a_summary():
    parser = cli.build_parser()
    assert "`" not in parser.description, "argparse prints the description verbatim"
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {a.dest: a.help for a in sub._choices_actions}
    assert set(summaries) == set(sub.choices), "every command shows in --help with a summary"
    assert all(summaries.values())
    for name, p in sub.choices.items():
        assert "`" not in (p.description or ""), name


# --- 2. the Quickstart prints what it shows ----------------------------------------------

@pytest.fixture(scope="module")
def server():
    with ServerThread(test_config()) as s:
        yield s


def shown_json(comment: str) -> dict:
    """``{"t_ms": 620, "speaker": "p1", ...}`` -> the keys it shows."""
    return json.loads(re.sub(r",\s*\.\.\.\s*}$", "}", comment.strip()))


def quickstart() -> Block:
    found = [b for b in DOC.blocks if re.search(r"^speakerswitch sample\b", b.body, re.M)]
    assert len(found) == 1, "one code block runs `speakerswitch sample` (the Quickstart)"
    return found[0]


def test_the_quickstart_prints_what_the_readme_shows(server, tmp_path, capsys):
    block = quickstart()
    lines = block.body.splitlines()
    tmp = f"{tmp_path}/"
    checked = set()
    for i, line in enumerate(lines):
        code, _, comment = line.partition(" #")
        code = code.strip().replace("/tmp/", tmp)
        if not code or code.startswith("#"):
            continue
        words = shlex.split(code)
        where = f"{block.file}:{block.line + i}: {line.strip()!r}"
        if words[0] == "speakerswitch":
            args = [server.target if w == MAKE_ADDRESS else w for w in words[1:]]
            assert cli.main(args) == 0, where
            checked.add(words[1])
        elif words[0] == "ls":
            assert sorted(p.name for p in pathlib.Path(words[1]).iterdir()) == \
                sorted(comment.split()), where
            checked.add("ls")
        elif words[0] == "cat":
            actual = [json.loads(x) for x in pathlib.Path(words[1]).read_text().splitlines()]
            shown = []  # the comment lines right below
            for x in lines[i + 1:]:
                if not x.strip().startswith("# {"):
                    break
                shown.append(shown_json(x.strip()[1:]))
            assert len(actual) == len(shown), f"{where}: {len(actual)} lines, shown {len(shown)}"
            for got, want in zip(actual, shown):
                assert {k: got.get(k) for k in want} == want, \
                    f"{where}: the code prints {json.dumps(got)}"
            checked.add("cat")
        elif words[0] == "diff":
            a, b = (pathlib.Path(w).read_text() for w in words[1:3])
            assert a == b, f"{where}: the server's decisions differ from the in-process replay"
            checked.add("diff")
        elif words[0] in ("make", "."):
            continue  # the bootstrap: the test runs in it
        else:
            pytest.fail(f"{where}: test_readme does not know how to check this line")
    assert {"sample", "replay", "ls", "cat", "diff"} <= checked
    assert "--server" in block.body and MAKE_ADDRESS in block.body

    # the prose below it: who takes the floor when, and the interjections that do not switch
    truth = json.loads((tmp_path / "sample" / "truth.json").read_text())
    m = re.search(r"The truth says (.+?) take the floor at (.+?) s;", DOC.text, re.S)
    assert m, "the Quickstart's sentence about the truth"
    who = re.findall(r"p\d+", m[1])
    when = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", m[2])]
    assert list(zip(who, when)) == [(p, t0 / 1000) for t0, _, p in truth["floor"]]
    m = re.search(r"interjections of (.+?) do not switch", DOC.text, re.S)
    said = {(p, float(t)) for p, times in re.findall(r"(p\d+) \(([^)]*)\)", m[1])
            for t in re.findall(r"\d+(?:\.\d+)?", times)}
    floor_starts = {(p, t0) for t0, _, p in truth["floor"]}
    interjections = {(p, a / 1000) for p, spans in truth["speech"].items() for a, _ in spans
                     if (p, a) not in floor_starts}
    assert said == interjections


# --- 3. the Python snippets run ------------------------------------------------------------

def snippets() -> list[Block]:
    return [b for b in DOC.blocks if b.lang == "python" and MAKE_ADDRESS in b.body]


def test_the_python_snippets_print_what_they_say_against_a_real_server(server):
    found = snippets()
    assert found, "the README's Python client snippet (against make run's address)"
    for block in found:
        code, marker, shown = block.body.partition("# prints:\n")
        assert marker, f"{block.where}: say what the snippet prints under '# prints:'"
        expected = [line.strip()[1:].strip() for line in shown.splitlines() if line.strip()]
        assert expected, f"{block.where}: '# prints:' shows nothing"
        r = subprocess.run([sys.executable, "-c", code.replace(MAKE_ADDRESS, server.target)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"{block.where}:\n{r.stderr}"
        assert r.stdout.splitlines() == expected, \
            f"{block.where} prints:\n{r.stdout}\nnot, as it says:\n" + "\n".join(expected)


README_MAX_BYTES = 12 * 1024
"""A newcomer's README: what it is, the two commands, a quickstart, links; the reference
lives in docs/."""
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)\s]*)?\)")


def test_the_readme_is_short_and_keeps_its_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= README_MAX_BYTES
    assert "make run" in text and "make test" in text


def test_every_docs_page_is_linked_from_the_readme_and_every_link_resolves():
    for path in DOC_FILES:
        for target in LINK.findall(path.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            assert (path.parent / target).exists(), f"{path.name}: broken link {target}"
    linked = {(ROOT / t).resolve() for t in LINK.findall((ROOT / "README.md").read_text())}
    pages = set((ROOT / "docs").glob("*.md"))
    assert pages and pages <= linked, sorted(p.name for p in pages - linked)
