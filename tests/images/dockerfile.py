"""Just enough of a Dockerfile parser to check our two Dockerfiles without a Docker engine."""

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # everything after the keyword, continuation lines joined

    @property
    def flags(self) -> dict[str, str]:
        """Leading `--name=value` options, e.g. COPY --from=test."""
        flags: dict[str, str] = {}
        for word in self.args.split():
            if not word.startswith("--"):
                break
            key, _, value = word[2:].partition("=")
            flags[key] = value
        return flags

    @property
    def words(self) -> list[str]:
        """The arguments after the options; JSON (exec) form is decoded."""
        if self.args.startswith("["):
            return json.loads(self.args)
        return shlex.split(self.args)[len(self.flags) :]

    def pairs(self) -> dict[str, str]:
        """KEY=value pairs of ENV, LABEL and ARG (quotes removed)."""
        return dict(word.split("=", 1) if "=" in word else (word, "") for word in self.words)


@dataclass(frozen=True)
class Stage:
    base: str
    name: str
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        return self.all(keyword)[-1]

    def copied_from(self) -> set[str]:
        return {i.flags["from"] for i in self.all("COPY") if "from" in i.flags}

    def args(self) -> dict[str, str]:
        return {k: v for i in self.all("ARG") for k, v in i.pairs().items()}

    def env(self) -> dict[str, str]:
        return {k: v for i in self.all("ENV") for k, v in i.pairs().items()}

    def labels(self) -> dict[str, str]:
        return {k: v for i in self.all("LABEL") for k, v in i.pairs().items()}


@dataclass(frozen=True)
class Dockerfile:
    global_args: dict[str, str]  # ARGs before the first FROM
    stages: tuple[Stage, ...]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    @property
    def final(self) -> Stage:
        """The stage `docker build` produces without --target."""
        return self.stages[-1]

    def resolved_base(self, stage: Stage) -> str:
        return expand(stage.base, self.global_args)


def expand(text: str, values: dict[str, str]) -> str:
    """Substitute ${NAME} and $NAME the way the builder does for ARG and ENV values."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m[1] or m[2], m[0]), text)


def logical_lines(text: str) -> list[str]:
    """Drop comments and blank lines, join backslash continuations."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        lines.append(current + stripped)
        current = ""
    return lines


def parse(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(base=words[0], name=name, instructions=()))
        elif not stages:
            global_args |= instruction.pairs()
        else:
            last = stages[-1]
            stages[-1] = Stage(last.base, last.name, (*last.instructions, instruction))
    return Dockerfile(global_args=global_args, stages=tuple(stages))


def load(name: str) -> Dockerfile:
    return parse((ROOT / name).read_text())
