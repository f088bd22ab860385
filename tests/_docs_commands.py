"""The commands the docs show, checked against the real command line (used by ``tests/test_docs_commands.py``).

``extract_commands`` finds every ``wsr-bench ...`` command in the fenced code blocks (``bash``, ``console``, ``sh``,
``shell``, ``text``) of a Markdown file: lines starting with ``wsr-bench``, ``$ wsr-bench``, ``.venv/bin/wsr-bench``
(any ``.../wsr-bench``), or a ``torchrun``/``python`` line running ``-m wsr_bench.cli``, with backslash continuations
joined, ``$ `` prompts and trailing ``# comments`` dropped, and ``...`` (elided arguments) left out. A code block
whose opening fence follows a ``<!-- smoke -->`` line (blank lines between allowed) is marked ``smoke``: the test runs
its commands end to end.

``check_command`` parses one with ``wsr_bench.cli.build_parser()`` and returns its problems, each naming the doc
file, line and command: an unknown subcommand or flag, a bad value, a ``--set`` key that is not a field of
``ExperimentConfig``, a ``configs/*.yaml`` that is not in the repository, a config (with its overrides) that does not
validate, eval settings that ``SpectrumOptions`` refuses.

``cli_reference`` renders the flag table of every subcommand from the parsers; ``docs/cli.md`` holds them between
``<!-- flags: NAME -->`` and ``<!-- /flags -->``. Regenerate them after changing the command line::

    .venv/bin/python tests/_docs_commands.py --write-cli     # rewrite the tables in docs/cli.md
    .venv/bin/python tests/_docs_commands.py                 # list every doc command and its problems
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import re
import shlex
import sys
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE_LANGS = frozenset({"bash", "console", "sh", "shell", "text"})
SMOKE_MARK = "<!-- smoke -->"
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
PROMPT = re.compile(r"^\$\s+")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
#: tokens that end a command (the rest is another command or a redirection).
COMMAND_END = frozenset({"|", "||", "&&", ";", "&", ">", ">>", "2>", "2>&1", "<"})
#: wrappers allowed before the command itself (``time wsr-bench ...``, ``nice wsr-bench ...``).
WRAPPERS = frozenset({"time", "nice", "/usr/bin/time", "env"})
#: what may run ``-m wsr_bench.cli`` (``torchrun --nproc_per_node=8 -m wsr_bench.cli train ...``).
MODULE_RUNNERS = frozenset({"torchrun", "python", "python3"})
FLAG_REGION = re.compile(r"(<!-- flags: (?P<name>[\w ]*) -->\n)(?P<body>.*?)(<!-- /flags -->)", re.S)


@dataclass(frozen=True)
class DocCommand:
    """One ``wsr-bench`` command shown in a doc."""

    path: str                   # the doc file, relative to the repository
    line: int                   # 1-based line where the command starts
    text: str                   # the command as shown (continuations joined, prompt stripped)
    argv: tuple[str, ...]       # the arguments after ``wsr-bench`` (or ``-m wsr_bench.cli``)
    smoke: bool = False         # in a block marked <!-- smoke -->: the test runs it

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


def doc_files() -> list[Path]:
    """README.md and every docs/*.md."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _code_blocks(lines: list[str]) -> Iterator[tuple[int, list[str], bool]]:
    """(index of the block's first line, its lines, smoke mark) for every fenced block of a command language."""
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        prev = i - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        smoke = prev >= 0 and lines[prev].strip() == SMOKE_MARK
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence[:3]):
            j += 1
        if lang in CODE_LANGS:
            yield i + 1, lines[i + 1:j], smoke
        i = j + 1


def command_argv(text: str) -> tuple[str, ...] | None:
    """The arguments after ``wsr-bench`` in one shell line, or ``None`` when it does not run wsr-bench."""
    words = text.split()
    while words and (words[0] in WRAPPERS or ENV_ASSIGNMENT.match(words[0])):
        words = words[1:]
    runs_cli = bool(words) and (words[0] == "wsr-bench" or words[0].endswith("/wsr-bench"))
    runs_module = bool(words) and words[0].split("/")[-1] in MODULE_RUNNERS and "wsr_bench.cli" in words
    if not (runs_cli or runs_module):
        return None
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError:  # unbalanced quotes: the checker reports it
        return ("<unreadable>", text)
    while tokens and (tokens[0] in WRAPPERS or ENV_ASSIGNMENT.match(tokens[0])):
        tokens = tokens[1:]
    if runs_cli:
        rest = tokens[1:]
    elif "-m" in tokens and tokens.index("-m") + 1 < len(tokens) and tokens[tokens.index("-m") + 1] == "wsr_bench.cli":
        rest = tokens[tokens.index("-m") + 2:]
    else:
        return None
    out = []
    for tok in rest:
        if tok in COMMAND_END:
            break
        if tok != "...":
            out.append(tok)
    return tuple(out)


def extract_commands(text: str, path: str = "<string>") -> list[DocCommand]:
    """Every wsr-bench command in the command-language code blocks of Markdown ``text``."""
    lines = text.splitlines()
    found = []
    for start, block, smoke in _code_blocks(lines):
        k = 0
        while k < len(block):
            first = PROMPT.sub("", block[k].strip())
            line_no, parts = start + k + 1, [first]
            while parts[-1].endswith("\\") and k + 1 < len(block):
                parts[-1] = parts[-1][:-1].rstrip()
                k += 1
                parts.append(block[k].strip())
            k += 1
            joined = " ".join(parts)
            argv = command_argv(joined)
            if argv is not None:
                shown = joined.split(" #")[0].rstrip() if " #" in joined else joined
                found.append(DocCommand(path, line_no, re.sub(r"\s+", " ", shown), argv, smoke))
    return found


def doc_commands() -> list[DocCommand]:
    """Every command of README.md and docs/*.md."""
    return [c for f in doc_files() for c in extract_commands(f.read_text(), str(f.relative_to(REPO)))]


# ------------------------------------------------------------------------------------------------- checking
def parse(argv: tuple[str, ...]) -> tuple[argparse.Namespace | None, str | None]:
    """``(namespace, None)``, ``(None, None)`` for ``--help``/``--version``, or ``(None, argparse's message)``."""
    from wsr_bench.cli import build_parser

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            return build_parser().parse_args(list(argv)), None
        except SystemExit as exc:
            if exc.code == 0:
                return None, None
            lines = err.getvalue().strip().splitlines()
            return None, lines[-1] if lines else f"argparse exited with {exc.code}"


def config_key_problem(key: str) -> str | None:
    """Why ``key`` (``section.field``) is not a config key of ``ExperimentConfig``, or ``None``."""
    from wsr_bench.config import ExperimentConfig

    node: typing.Any = ExperimentConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(node):
            return f"--set {key}: {'.'.join(parts[:i])} is a key, not a config section"
        names = [f.name for f in dataclasses.fields(node)]
        if part not in names:
            where = ".".join(parts[:i]) or "the top level"
            return f"--set {key}: no config key {part!r} in {where} (known: {', '.join(names)})"
        node = typing.get_type_hints(node)[part]
    if dataclasses.is_dataclass(node):
        return f"--set {key}: {key} is a config section, not a key"
    return None


def _config_problems(args: argparse.Namespace) -> list[str]:
    from wsr_bench.cli import _config_overrides
    from wsr_bench.config import ConfigError, load_config

    problems = []
    for item in getattr(args, "overrides", None) or []:
        key, sep, _ = item.partition("=")
        problem = f"--set {item}: not KEY=VALUE" if not sep else config_key_problem(key.strip())
        if problem:
            problems.append(problem)
    config = getattr(args, "config", None)
    if config and not problems and (REPO / config).is_file():
        try:
            load_config(REPO / config, _config_overrides(args))
        except ConfigError as exc:
            problems.append(f"{config} with these flags: {exc}")
    return problems


def _eval_problems(args: argparse.Namespace) -> list[str]:
    """The settings ``wsr-bench eval`` validates before it loads anything (``_cmd_eval``'s ``SpectrumOptions``)."""
    from wsr_bench.evaluate import SpectrumOptions

    try:
        SpectrumOptions(eps=args.eps, attack=args.attack, threat_model=args.threat_model, steps=args.steps,
                        batch_size=args.batch_size, seed=args.seed, attack_all=args.attack_all, sweep=args.sweep,
                        warm_start_steps=args.warm_start_steps, resume=args.resume, flag_names=True)
    except ValueError as exc:
        return [f"eval settings: {exc}"]
    if args.resume and not args.out:
        return ["eval --resume needs --out (the state lives in OUT.state/)"]
    return []


def check_command(cmd: DocCommand) -> list[str]:
    """The problems of one doc command, each prefixed with ``file:line: command``."""
    if cmd.argv[:1] == ("<unreadable>",):
        return [f"{cmd.where}\n    cannot split it into words (unbalanced quotes?)"]
    problems = []
    for tok in cmd.argv:
        for path in re.findall(r"(?:^|[\s=/])(configs/[\w./-]+\.ya?ml)", " " + tok):
            if not (REPO / path).is_file():
                problems.append(f"{path} does not exist in the repository")
    args, error = parse(cmd.argv)
    if error:
        problems.append(error)
    elif args is not None:
        if getattr(args, "command", None) is None:
            problems.append("no subcommand (wsr-bench COMMAND ...)")
        problems += _config_problems(args)
        if getattr(args, "command", None) == "eval":
            problems += _eval_problems(args)
    return [f"{cmd.where}\n    {p}" for p in problems]


# ------------------------------------------------------------------------------------------------- links
LINK = re.compile(r"\]\(([^)\s]+)\)")


def heading_slugs(text: str) -> set[str]:
    """The anchors GitHub gives the headings of Markdown ``text`` (lower case, punctuation dropped, spaces to
    hyphens, ``-1``, ``-2`` ... for repeats); headings inside code blocks do not count."""
    slugs: set[str] = set()
    in_code = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_code = not in_code
        m = re.match(r"^#{1,6} +(.*?)\s*#*\s*$", line)
        if in_code or not m:
            continue
        base = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        slug, n = base, 0
        while slug in slugs:
            n += 1
            slug = f"{base}-{n}"
        slugs.add(slug)
    return slugs


def link_problems(doc: Path) -> list[str]:
    """Relative links of ``doc`` (outside code blocks) whose file does not exist or whose #anchor names no heading."""
    problems = []
    in_code = False
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        if FENCE.match(line):
            in_code = not in_code
        if in_code:
            continue
        for target in LINK.findall(line):
            if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            path = (doc.parent / file_part).resolve() if file_part else doc
            where = f"{doc.relative_to(REPO)}:{number}: ({target})"
            if not path.exists():
                problems.append(f"{where}: {file_part} does not exist")
            elif anchor and path.suffix == ".md" and anchor not in heading_slugs(path.read_text()):
                problems.append(f"{where}: no heading with anchor #{anchor} in {path.relative_to(REPO)}")
    return problems


#: repository files a doc may name in its text (outputs such as ``runs/...`` or ``leaderboard/entries/...`` are not).
REPO_PATH = re.compile(r"(?<![\w/.-])((?:configs/[\w.-]+\.ya?ml|benchmarks/[\w-]+\.py|wsr_bench/[\w./-]*\w"
                       r"|tests/[\w-]+\.py))")


def path_problems(doc: Path) -> list[str]:
    """Files of the repository (configs, benchmark scripts, package modules, tests) that ``doc`` names but that do
    not exist; names with ``{`` ``*`` or ``<`` are patterns, not files."""
    problems = []
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        for name in REPO_PATH.findall(line):
            if not any(c in name for c in "{*<") and not (REPO / name).exists():
                problems.append(f"{doc.relative_to(REPO)}:{number}: {name} does not exist in the repository")
    return problems


# ------------------------------------------------------------------------------------------------- cli.md
def subcommands(parser: argparse.ArgumentParser | None = None, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """``{"": top-level parser, "train": ..., "leaderboard build": ...}``: every parser, by its command words."""
    from wsr_bench.cli import build_parser

    parser = parser or build_parser()
    found = {prefix: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(subcommands(sub, f"{prefix} {name}".strip()))
    return found


def documented_arguments(parser: argparse.ArgumentParser) -> list[tuple[str, list[str]]]:
    """``(what the table shows, the strings docs/cli.md must mention)`` for every argument of ``parser``."""
    fmt = parser._get_formatter()
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        shown = fmt._format_action_invocation(action)
        names = list(action.option_strings) or [shown]
        rows.append((shown, names))
    return rows


def _cell(text: str) -> str:
    """Table-cell text: pipes escaped, and <placeholders> kept visible (not read as HTML tags)."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def flag_table(parser: argparse.ArgumentParser) -> str:
    """The Markdown table of ``parser``'s arguments: invocation, default, help."""
    lines = ["| argument | default | what it does |", "|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        shown = parser._get_formatter()._format_action_invocation(action)
        default = action.default
        if default is None or default is False or default == [] or default == argparse.SUPPRESS:
            default = ""
        help_text = (action.help or "") % {"default": action.default, "prog": parser.prog}
        if action.required and action.option_strings:
            help_text = f"required; {help_text}" if help_text else "required"
        lines.append(f"| `{_cell(shown)}` | {_cell(f'`{default}`' if default != '' else '')} | {_cell(help_text)} |")
    return "\n".join(lines) + "\n"


def cli_reference(text: str) -> str:
    """``text`` (docs/cli.md) with every ``<!-- flags: NAME -->`` region rewritten from the parsers."""
    parsers = subcommands()

    def render(m: re.Match) -> str:
        name = m.group("name").strip()
        if name not in parsers:
            raise KeyError(f"docs/cli.md: <!-- flags: {name} --> names no subcommand (known: {', '.join(parsers)})")
        return m.group(1) + flag_table(parsers[name]) + m.group(4)

    return FLAG_REGION.sub(render, text)


def cli_sections(text: str) -> dict[str, str]:
    """docs/cli.md cut at its headings naming a command (``## `wsr-bench train` ...``): ``{command words: text}``;
    a section runs to the next heading of its level or above (its own sub-headings stay in it)."""
    sections: dict[str, str] = {}
    current, level = None, 0
    for line in text.splitlines():
        heading = re.match(r"^(#{1,6}) ", line)
        if heading:
            m = re.match(r"^#{2,6} .*?`wsr-bench((?: [a-z-]+)*)`", line)
            if m:
                current, level = m.group(1).strip(), len(heading.group(1))
                sections[current] = ""
            elif len(heading.group(1)) <= level:
                current, level = None, 0
        if current is not None:
            sections[current] += line + "\n"
    return sections


def undocumented(text: str) -> list[str]:
    """Every subcommand without its section in docs/cli.md and every argument its section does not mention."""
    sections = cli_sections(text)
    missing = []
    for name, parser in subcommands().items():
        if parser._subparsers is not None and name:  # a group (leaderboard): its actions have sections
            continue
        if name not in sections:
            missing.append(f"docs/cli.md has no section (a heading naming `{' '.join(['wsr-bench', name]).strip()}`)")
            continue
        for shown, names in documented_arguments(parser):
            for flag in names:
                if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", sections[name]):
                    missing.append(f"docs/cli.md, section `wsr-bench {name}`: {flag} ({shown}) is not mentioned")
    return missing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="check the docs' wsr-bench commands; regenerate docs/cli.md's tables")
    p.add_argument("--write-cli", action="store_true", help="rewrite the flag tables of docs/cli.md")
    args = p.parse_args(argv)
    if args.write_cli:
        path = REPO / "docs" / "cli.md"
        path.write_text(cli_reference(path.read_text()))
        print(f"rewrote the flag tables of {path.relative_to(REPO)}")
    problems = [p for c in doc_commands() for p in check_command(c)] + undocumented((REPO / "docs/cli.md").read_text())
    problems += [p for f in doc_files() for p in link_problems(f) + path_problems(f)]
    for c in doc_commands():
        print(("smoke " if c.smoke else "      ") + c.where)
    print("\n".join(problems) or "no problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
