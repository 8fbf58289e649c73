"""Every program the project starts on the host is in hack/host-tools.toml, so the one install
step (hack/hosttools.py) knows it: a new machine has only what its image has.

The scan reads the Python under hack/, dev/, bench/ and tests/ (programs started through
subprocess, a `run(...)` helper or looked up with `shutil.which`), the Makefile's recipes and
the scripts the Makefile runs on the host (hack/*.sh; hack/ci/*.sh run inside the CI images).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from testapp_dev import scripts

REPO = Path(__file__).resolve().parents[2]
hosttools = scripts.load("hosttools", "hack/hosttools.py")

STARTERS = {"run", "Popen", "check_output", "check_call", "call", "which"}
# fmt: off
SHELL_WORDS = {
    "if", "then", "else", "elif", "fi", "for", "in", "do", "done", "while", "until", "case",
    "esac", "function", "return", "local", "export", "set", "unset", "trap", "exit", "echo",
    "printf", "test", "[", "[[", "]]", "]", "cd", "read", "shift", "eval", "exec", "true",
    "false", "command", "source", ".", ":", "wait", "break", "continue", "declare", "readonly",
    "type", "kill", "time",
}
# fmt: on
PROGRAM = re.compile(r"^(/[\w./+-]+|[a-z][\w.+-]*)$")


def python_programs(path: Path) -> set[str]:
    """Literal program names in `run(["prog", ...])`, `run("prog", ...)`, `which("prog")`, and in
    a list literal assigned to a name that such a call then takes."""
    tree = ast.parse(path.read_text())
    lists: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.List):
            first = node.value.elts[:1]
            if first and isinstance(first[0], ast.Constant) and isinstance(first[0].value, str):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        lists[target.id] = first[0].value
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        function = node.func
        name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
        if name not in STARTERS:
            continue
        argument = node.args[0]
        if isinstance(argument, ast.List | ast.Tuple) and argument.elts:
            argument = argument.elts[0]
        if isinstance(argument, ast.Name) and argument.id in lists:
            found.add(lists[argument.id])
        elif isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            found.add(argument.value)
    return {program for program in found if PROGRAM.match(program)}


def shell_commands(line: str) -> list[str]:
    """The first word of each simple command on a (logical) line of shell."""
    line = re.sub(r"'[^']*'|\"[^\"]*\"", "''", line.split(" #")[0])
    # Arithmetic and array assignments hold no commands.
    line = re.sub(r"\$\(\(.*?\)\)|\b\w+=\([^)]*\)", "VAR", line).replace(")", " ")
    commands = []
    for part in re.split(r"\|\||&&|[;|`!(]|\{\s|\bthen\b|\bdo\b|\belse\b", line):
        words = part.split()
        while words and (re.match(r"^\w+=", words[0]) or words[0] in ("exec", "time", "}")):
            words = words[1:]
        if words:
            commands.append(words[0])
    return commands


def script_lines(text: str) -> list[str]:
    """A script's logical lines: continuations joined, here-documents and comments left out."""
    lines: list[str] = []
    current, heredoc = "", None
    for line in text.splitlines():
        if heredoc is not None:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        current += line.rstrip("\\") + " "
        if line.endswith("\\"):
            continue
        if not current.lstrip().startswith("#"):
            lines.append(current)
        if match := re.search(r"<<-?\s*['\"]?(\w+)", current):
            heredoc = match.group(1)
        current = ""
    return lines


def without_make_references(text: str) -> str:
    """A recipe as the shell sees its commands: make's $(...), ${...} and $X replaced by VAR (a
    word no program is named), innermost first."""
    text = text.replace("$$", "\0")
    while (stripped := re.sub(r"\$[({][^$(){}]*[)}]|\$[@<^*A-Za-z]", "VAR", text)) != text:
        text = stripped
    return text.replace("\0", "$")


def recipe_lines(makefile: str) -> list[str]:
    """The recipes' logical lines, without make's own prefixes (@, -, +)."""
    lines, current = [], ""
    for line in makefile.splitlines():
        if current or line.startswith("\t"):
            current += line.rstrip("\\").strip() + " "
            if not line.endswith("\\"):
                lines.append(current.lstrip("@-+"))
                current = ""
    return lines


def shell_programs(lines: list[str], functions: set[str]) -> set[str]:
    return {
        word
        for line in lines
        for word in shell_commands(line)
        if word not in SHELL_WORDS and word not in functions and PROGRAM.match(word)
    }


def programs_started() -> dict[str, set[str]]:
    """Program -> the files that start it."""
    found: dict[str, set[str]] = {}

    def add(programs: set[str], source: Path) -> None:
        for program in programs:
            found.setdefault(program, set()).add(str(source.relative_to(REPO)))

    for folder in ("hack", "dev", "bench", "tests"):
        for path in (REPO / folder).rglob("*.py"):
            add(python_programs(path), path)
    makefile = REPO / "Makefile"
    add(
        shell_programs(recipe_lines(without_make_references(makefile.read_text())), set()), makefile
    )
    for script in (REPO / "hack").glob("*.sh"):
        text = script.read_text()
        functions = set(re.findall(r"^\s*(\w+)\(\)", text, re.MULTILINE))
        add(shell_programs(script_lines(text), functions), script)
    return found


def test_every_program_started_on_the_host_is_in_the_table() -> None:
    table = hosttools.Table.load()
    known = table.names() | set(table.project)
    unlisted = {p: sorted(files) for p, files in programs_started().items() if p not in known}
    assert not unlisted, (
        "programs started on the host that hack/host-tools.toml does not list "
        f"(add them with their Debian package): {unlisted}"
    )


def test_the_scan_finds_what_the_real_node_runs() -> None:
    """The scan is not vacuous: the programs of the front door's failure are found."""
    started = programs_started()
    for program in ("nft", "ip", "runc", "podman", "kubectl", "curl", "apt-get", "npm"):
        assert program in started


def test_the_scan_reads_each_way_of_starting_a_program(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text(
        "import shutil, subprocess\n"
        "subprocess.run(['nft', 'list'])\n"
        "run('ipset', 'list')\n"
        "shutil.which('conntrack')\n"
        "command = ['mmdebstrap', '--variant=minbase']\n"
        "subprocess.run(command)\n"
        "subprocess.run(['--not-a-program'])\n"
    )
    assert python_programs(source) == {"nft", "ipset", "conntrack", "mmdebstrap"}
    recipe = (
        "\t@set -e; if [ -x $(BIN)/x ]; then rsync -a $$(mktemp -d) y && wrk -d1 | tee z; fi; "
        "exit $$((a || b)); names=(one two)\n"
    )
    assert shell_programs(recipe_lines(without_make_references(recipe)), set()) == {
        "rsync",
        "mktemp",
        "wrk",
        "tee",
    }


@pytest.mark.parametrize("target", ["toolchain", "cluster-up", "demo", "test", "bench"])
def test_every_target_of_the_makefile_that_installs_tools_has_some(target: str) -> None:
    assert any(hosttools.Table.load().needed([target]).values())
