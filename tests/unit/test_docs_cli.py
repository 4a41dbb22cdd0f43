"""The command-line docs cannot drift silently from the CLI.

* every command registered on the ``offswitch`` app has a ``##``/``###`` section in
  docs/cli.md whose heading names ``offswitch <command>``;
* every option written after ``offswitch <command>`` in an example (a fenced code block, or an
  inline code span that starts with ``offswitch <command>``) exists on that command, and the
  command itself exists. Checked in docs/cli.md, docs/harness.md and docs/quickstart.md.

The command list comes from the typer app itself (``offswitch.cli.app``), not from a copy.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI_DOC = ROOT / "docs" / "cli.md"
EXAMPLE_DOCS = [CLI_DOC, ROOT / "docs" / "harness.md", ROOT / "docs" / "quickstart.md"]

# read by offswitch.cli.main on any command line, or by click on every command
GLOBAL_OPTIONS = {"--debug", "--help"}

# `offswitch <word>`, also as `.venv/bin/offswitch`, `python -m offswitch`; not `offswitch_manifest`
INVOCATION = re.compile(r"(?<![\w.-])offswitch[ \t]+([a-z][a-z0-9-]*)(?![\w-])")
LONG_OPTION = re.compile(r"(?<!\S)(--[A-Za-z][A-Za-z0-9-]*)")
SHORT_OPTION = re.compile(r"(?<!\S)(-[A-Za-z])(?=[\s=]|$)")
# where one shell command ends and the next begins
SHELL_SEPARATOR = re.compile(r"\|\|?|&&|;|\$\(|\)")


def cli_commands() -> dict[str, set[str]]:
    """{command name: every option string it accepts} from the real app."""
    import typer

    from offswitch.cli import _register_commands, app

    _register_commands()
    group = typer.main.get_command(app)
    commands: dict[str, set[str]] = {}
    for name, command in group.commands.items():
        options = set(GLOBAL_OPTIONS)
        for param in command.params:
            options.update(getattr(param, "opts", ()))
            options.update(getattr(param, "secondary_opts", ()))
        commands[name] = options
    return commands


def _code_blocks_and_prose(text: str) -> tuple[list[str], str]:
    """(logical lines of fenced code blocks, with `\\` continuations joined; the prose)."""
    code: list[str] = []
    prose: list[str] = []
    in_block = False
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_block = not in_block
            if pending:
                code.append(pending)
                pending = ""
            continue
        if not in_block:
            prose.append(line)
            continue
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        code.append(pending + stripped)
        pending = ""
    return code, "\n".join(prose)


def _strip_comment(line: str) -> str:
    return re.sub(r"(^|\s)#.*$", "", line)


def example_invocations(text: str) -> list[tuple[str, str, str]]:
    """(command, its arguments up to the end of that shell command, the example it came from)."""
    code, prose = _code_blocks_and_prose(text)
    examples = [_strip_comment(line) for line in code]
    # inline code spans that are themselves an invocation: `offswitch report runs/smoke`
    examples += [span for span in re.findall(r"`([^`]+)`", prose) if INVOCATION.match(span.strip())]
    found = []
    for example in examples:
        for match in INVOCATION.finditer(example):
            rest = example[match.end():]
            end = SHELL_SEPARATOR.search(rest)
            found.append((match.group(1), rest[: end.start()] if end else rest, " ".join(example.split())))
    return found


def check_examples(text: str, commands: dict[str, set[str]]) -> list[str]:
    """Problems: unknown commands, and options a command does not have."""
    problems = []
    for command, args, example in example_invocations(text):
        if command not in commands:
            problems.append(f"unknown command `offswitch {command}` in: {example}")
            continue
        for option in LONG_OPTION.findall(args) + SHORT_OPTION.findall(args):
            if option not in commands[command]:
                problems.append(f"`offswitch {command}` has no option {option} (in: {example})")
    return problems


def check_sections(text: str, commands: dict[str, set[str]]) -> list[str]:
    headings = [line for line in text.splitlines() if line.startswith(("## ", "### "))]
    missing = []
    for name in commands:
        pattern = re.compile(rf"(?<![\w-])offswitch {re.escape(name)}(?![\w-])")
        if not any(pattern.search(h) for h in headings):
            missing.append(name)
    return missing


@pytest.fixture(scope="module")
def commands() -> dict[str, set[str]]:
    found = cli_commands()
    assert {"keygen", "implant", "harness", "report"} <= set(found), "the command list did not load"
    return found


def test_every_command_has_a_section(commands):
    missing = check_sections(CLI_DOC.read_text(encoding="utf-8"), commands)
    assert not missing, f"docs/cli.md has no `## offswitch <cmd>` / `### offswitch <cmd>` section for: {missing}"


@pytest.mark.parametrize("doc", EXAMPLE_DOCS, ids=lambda p: p.name)
def test_examples_use_real_commands_and_options(doc, commands):
    text = doc.read_text(encoding="utf-8")
    assert example_invocations(text) or doc != CLI_DOC, "no examples found in docs/cli.md: the parser is broken"
    problems = check_examples(text, commands)
    assert not problems, "\n".join(problems)


def test_every_command_has_an_example_in_cli_doc(commands):
    shown = {command for command, _args, _example in example_invocations(CLI_DOC.read_text(encoding="utf-8"))}
    assert not set(commands) - shown, f"docs/cli.md has no example for: {sorted(set(commands) - shown)}"


# ------------------------------------------------------------------ the checks themselves can fail


def test_checker_catches_a_wrong_option_and_command(commands):
    bad = "\n".join([
        "## offswitch implant",
        "```bash",
        "offswitch implant --key k --out o \\",
        "    --epochs 3",
        "offswitch trigger --key k -x 1 | offswitch commit-check c.json --trigger-stdin",
        "offswitch implode --key k",
        "```",
        "Prose with `offswitch verify runs/a --key k --quick` in it, and `--anything` outside examples.",
    ])
    problems = check_examples(bad, commands)
    assert any("implant` has no option --epochs" in p for p in problems)
    assert any("trigger` has no option -x" in p for p in problems)
    assert any("unknown command `offswitch implode`" in p for p in problems)
    assert any("verify` has no option --quick" in p for p in problems)
    assert not any("commit-check` has no option" in p for p in problems), "options after a pipe belong to the next command"
    assert not any("--anything" in p for p in problems), "prose outside examples is not checked"
    assert len(problems) == 4, problems


def test_checker_catches_a_missing_section(commands):
    text = "\n".join(f"### offswitch {name}" for name in commands if name != "commit")
    text += "\n### offswitch commit-check"
    assert check_sections(text, commands) == ["commit"], "commit-check must not count as a section for commit"
