"""Docs that cannot rot: every ``wsr-bench`` command shown in README.md and docs/*.md parses with the real command
line (its ``--set`` keys are config keys, its configs exist and validate), the commands marked ``<!-- smoke -->`` run
end to end, and docs/cli.md mentions every subcommand and every flag. The machinery is in ``_docs_commands.py``."""

import shutil
import time

import pytest
from _docs_commands import (
    REPO,
    check_command,
    cli_reference,
    config_key_problem,
    doc_commands,
    doc_files,
    extract_commands,
    link_problems,
    parse,
    path_problems,
    subcommands,
    undocumented,
)

from wsr_bench.cli import main

COMMANDS = doc_commands()
SMOKE_SECONDS = 60  # "a few seconds" each on an idle core; generous for a loaded CI machine


def test_the_docs_show_commands():
    files = {c.path for c in COMMANDS}
    assert "README.md" in files and "docs/cli.md" in files and "docs/evaluation.md" in files
    assert any(c.smoke for c in COMMANDS if c.path == "README.md")


@pytest.mark.parametrize("cmd", COMMANDS, ids=[f"{c.path}:{c.line}" for c in COMMANDS])
def test_doc_command_parses(cmd):
    problems = check_command(cmd)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", [f for f in doc_files() if any(c.smoke for c in extract_commands(f.read_text()))],
                         ids=lambda f: str(f.relative_to(REPO)))
def test_smoke_commands_run(doc, tmp_path, monkeypatch, capsys):
    """The commands of a doc's <!-- smoke --> blocks, in order, in one temporary folder holding the repository's
    configs/ and a copy of leaderboard/ (so `wsr-bench leaderboard build leaderboard` writes into the copy)."""
    (tmp_path / "configs").symlink_to(REPO / "configs")
    shutil.copytree(REPO / "leaderboard", tmp_path / "leaderboard")
    monkeypatch.chdir(tmp_path)
    for cmd in (c for c in extract_commands(doc.read_text(), str(doc.relative_to(REPO))) if c.smoke):
        t0 = time.perf_counter()
        rc = main(list(cmd.argv))
        seconds = time.perf_counter() - t0
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 0, f"{cmd.where}\n    exit code {rc}: {err[-1] if err else ''}"
        assert seconds < SMOKE_SECONDS, f"{cmd.where}\n    took {seconds:.0f}s: too slow for <!-- smoke -->"


def test_cli_md_documents_every_subcommand_and_flag():
    missing = undocumented((REPO / "docs" / "cli.md").read_text())
    assert not missing, "\n".join(missing) + "\n(regenerate the tables: .venv/bin/python tests/_docs_commands.py " \
                                             "--write-cli)"


def test_links_between_the_docs_resolve():
    problems = [p for f in doc_files() for p in link_problems(f)]
    assert not problems, "\n".join(problems)


def test_files_the_docs_name_exist():
    problems = [p for f in doc_files() for p in path_problems(f)]
    assert not problems, "\n".join(problems)


def test_cli_md_flag_tables_render():
    text = (REPO / "docs" / "cli.md").read_text()
    assert "<!-- flags: eval -->" in text
    assert "--warm-start-steps" in cli_reference(text)


# ------------------------------------------------------------------------------------------- the checker itself
DOC = """# A page

Some prose mentioning wsr-bench eval --bogus, which is not in a code block.

```bash
$ wsr-bench --threads 1 run configs/demo.yaml --out x --no-progress   # a comment
wsr-bench eval --model racl --eps 0.03,8/255 \\
    --n-examples 8 --bogus-flag
torchrun --nproc_per_node=2 -m wsr_bench.cli train configs/demo.yaml --out t --set search.nope=1
make demo   # not wsr-bench
```

```python
wsr-bench eval --inside-python   # python blocks are not shell
```

<!-- smoke -->

```text
$ .venv/bin/wsr-bench train configs/missing.yaml --out y
model on digits: clean 99.0% (output lines are not commands)
wsr-bench nosuchcommand
```
"""


def test_extractor_joins_continuations_strips_prompts_and_comments():
    cmds = extract_commands(DOC, "doc.md")
    assert [c.line for c in cmds] == [6, 7, 9, 20, 22]
    assert cmds[0].argv == ("--threads", "1", "run", "configs/demo.yaml", "--out", "x", "--no-progress")
    assert cmds[0].text.endswith("--no-progress")
    assert cmds[1].argv[-3:] == ("--n-examples", "8", "--bogus-flag")
    assert cmds[2].argv[:2] == ("train", "configs/demo.yaml")
    assert [c.smoke for c in cmds] == [False, False, False, True, True]


def test_checker_accepts_good_and_names_bad_commands():
    run, bad_flag, bad_key, missing_config, bad_command = extract_commands(DOC, "doc.md")
    assert check_command(run) == []  # `run --no-progress` parses now
    (problem,) = check_command(bad_flag)
    assert problem.startswith("doc.md:7: wsr-bench eval --model racl")
    assert "unrecognized arguments: --bogus-flag" in problem
    (problem,) = check_command(bad_key)
    assert problem.startswith("doc.md:9: ") and "no config key 'nope' in search" in problem
    problems = check_command(missing_config)
    assert problems and all(p.startswith("doc.md:20: ") for p in problems)
    assert "configs/missing.yaml does not exist" in problems[0]
    (problem,) = check_command(bad_command)
    assert "invalid choice: 'nosuchcommand'" in problem


def test_checker_validates_values_config_keys_and_eval_settings():
    def problems(line):
        return check_command(extract_commands(f"```bash\n{line}\n```\n", "d.md")[0])

    assert problems("wsr-bench train configs/demo.yaml --out o --set train.epochs=2 --set data.limit=8") == []
    assert "train.recipe" in problems("wsr-bench train configs/demo.yaml --out o --set train.recipe=nope")[0]
    assert "eval settings" in problems("wsr-bench eval --model racl --eps 8")[0]
    assert "invalid int value" in problems("wsr-bench eval --model racl --n-examples many")[0]
    assert "needs --out" in problems("wsr-bench eval --model racl --resume")[0]
    assert config_key_problem("search.progress") is None and config_key_problem("zoo.models") is None
    assert "is a config section" in config_key_problem("search")
    assert "is a key, not a config section" in config_key_problem("seed.x")


def test_undocumented_finds_a_missing_flag():
    text = (REPO / "docs" / "cli.md").read_text()
    assert undocumented(text) == []
    assert any("--keep-state" in m for m in undocumented(text.replace("--keep-state", "--kept")))
    assert any("no section" in m and "zoo" in m for m in undocumented(text.replace("`wsr-bench zoo`", "zoo")))


def test_link_checker_finds_a_broken_anchor_and_file(tmp_path, monkeypatch):
    import _docs_commands

    monkeypatch.setattr(_docs_commands, "REPO", tmp_path)
    (tmp_path / "a.md").write_text("# Title\n\n## `wsr-bench eval` — it\n\n[ok](#wsr-bench-eval--it) [bad](#nope) "
                                   "[gone](missing.md) [web](https://example.org)\n```\n[in code](x.md)\n```\n")
    problems = link_problems(tmp_path / "a.md")
    assert len(problems) == 2 and "#nope" in problems[0] and "missing.md does not exist" in problems[1]
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.yaml").write_text("")
    (tmp_path / "b.md").write_text("`configs/demo.yaml`, `configs/gone.yaml` and `configs/search_naive_{1,3}.yaml`\n")
    (problem,) = path_problems(tmp_path / "b.md")
    assert problem == "b.md:1: configs/gone.yaml does not exist in the repository"


# ------------------------------------------------------------------------------------------- the common flags
MODEL_COMMANDS = {"train": ["configs/demo.yaml", "--out", "o"], "search": ["configs/demo.yaml", "--out", "o"],
                  "run": ["configs/demo.yaml", "--out", "o"], "zoo": ["configs/zoo_fashion.yaml"],
                  "eval": ["--model", "racl", "--out", "e.json"]}


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_every_model_command_takes_the_common_flags(command):
    args, error = parse((command, *MODEL_COMMANDS[command], "--device", "cpu", "--memory-format", "contiguous",
                         "--no-progress"))
    assert error is None and args.device == "cpu" and args.no_progress and args.memory_format == "contiguous"
    args, error = parse((command, *MODEL_COMMANDS[command], "--resume"))
    if command in ("run", "zoo"):  # they always continue what their folder holds, and say so
        assert "unrecognized arguments: --resume" in error
        assert "no --resume needed" in subcommands()[command].format_help()
    else:
        assert error is None and args.resume


def test_common_flags_are_documented_the_same_way():
    parsers = subcommands()
    for flag in ("--device", "--memory-format", "--no-progress"):
        helps = {name: next(a.help for a in parsers[name]._actions if flag in a.option_strings)
                 for name in MODEL_COMMANDS}
        assert len(set(helps.values())) == 1, helps


def test_no_progress_reaches_the_pipeline_and_the_zoo(monkeypatch, tmp_path):
    """`wsr-bench run --no-progress` (once `unrecognized arguments`) passes progress=False to run_pipeline; zoo to
    build_zoo and, through search.progress, to its search."""
    import wsr_bench.jobs.run
    import wsr_bench.jobs.zoo

    seen = {}

    class Stop(Exception):
        pass

    def fake(name):
        def record(cfg, out, **kwargs):
            seen[name] = (kwargs["progress"], cfg.search.progress)
            raise Stop
        return record

    monkeypatch.setattr(wsr_bench.jobs.run, "run_pipeline", fake("run"))
    monkeypatch.setattr(wsr_bench.jobs.zoo, "build_zoo", fake("zoo"))
    for command, config in (("run", "configs/demo.yaml"), ("zoo", "configs/zoo_fashion.yaml")):
        with pytest.raises(Stop):
            main([command, str(REPO / config), "--out", str(tmp_path / command), "--no-progress"])
    assert seen["run"][0] is False and seen["zoo"] == (False, False)


def test_the_readme_python_example_runs_and_prints_what_the_readme_shows(tmp_path):
    """The README's Python block (published tag through timm, the paper's size, export and reload) runs in a fresh
    interpreter in an empty folder and prints exactly the ```text block that follows it."""
    import re
    import subprocess
    import sys

    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- pretrained-example -->\s*```python\n(.*?)```\s*```text\n(.*?)```", text, re.S)
    assert match, "README.md: the pretrained example (a python block and its text output) is missing"
    code, shown = match.groups()
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines() == shown.splitlines()
