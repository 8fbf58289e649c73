"""Ask gitlab-ci-local which jobs a GitLab pipeline would have, for a simulated push, MR or tag.

gitlab-ci-local takes the branch from git and always says CI_PIPELINE_SOURCE=push; it never sets
CI_COMMIT_TAG or CI_MERGE_REQUEST_*. A `Trigger` overrides those predefined variables the way
GitLab sets them. Its `--unset-variable` applies only after rules are evaluated, so a variable
GitLab leaves unset (CI_COMMIT_BRANCH in tag and MR pipelines) is set to "" here: both are false
in a rule expression and equal to no string.

gitlab-ci-local evaluates `workflow:rules` only for their variables and ignores their `when`.
`pipeline_is_created` still lets its own rule evaluator decide: it copies the workflow rules into
a one-job probe pipeline and reads that job's `when` (`never` = GitLab creates no pipeline).
`pipeline_variables` runs a probe job with the workflow rules and the global variables (shell
executor) and reads what it echoes: PUSH and REGISTRY are decided there, for every job.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CI_FILE = REPO / ".gitlab-ci.yml"
GITLAB_CI_LOCAL = REPO / "node_modules" / ".bin" / "gitlab-ci-local"
STATE_DIR = REPO / ".gitlab-ci-local"
DEPLOY_BRANCHES = ("development", "staging", "master")
# What the probe job echoes: the variables the workflow rules decide.
WORKFLOW_VARIABLES = ("PUSH", "REGISTRY", "CACHE_REGISTRY", "BUILDER_SERVICE_ACCOUNT")


@dataclass(frozen=True)
class Trigger:
    """What GitLab would set for one kind of pipeline."""

    name: str
    variables: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def push(
        branch: str, open_merge_requests: bool = False, protected: bool | None = None
    ) -> Trigger:
        """A push to `branch`; the deploy branches are protected unless `protected=False`."""
        protected = branch in DEPLOY_BRANCHES if protected is None else protected
        variables = {
            "CI_PIPELINE_SOURCE": "push",
            "CI_COMMIT_BRANCH": branch,
            "CI_COMMIT_REF_NAME": branch,
            "CI_COMMIT_REF_PROTECTED": "true" if protected else "false",
        }
        if open_merge_requests:
            variables["CI_OPEN_MERGE_REQUESTS"] = "group/test-app!1"
        name = f"push to {'protected' if protected else 'unprotected'} {branch}"
        return Trigger(name + (" with an open MR" * open_merge_requests), variables)

    @staticmethod
    def merge_request(source: str, target: str) -> Trigger:
        return Trigger(
            f"merge request {source} -> {target}",
            {
                "CI_PIPELINE_SOURCE": "merge_request_event",
                "CI_COMMIT_BRANCH": "",
                "CI_COMMIT_REF_NAME": source,
                # refs/merge-requests/<iid>/head is never a protected ref
                "CI_COMMIT_REF_PROTECTED": "false",
                "CI_MERGE_REQUEST_IID": "1",
                "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": source,
                "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": target,
            },
        )

    @staticmethod
    def tag(name: str, protected: bool = True) -> Trigger:
        return Trigger(
            f"{'protected' if protected else 'unprotected'} tag {name}",
            {
                "CI_PIPELINE_SOURCE": "push",
                "CI_COMMIT_TAG": name,
                "CI_COMMIT_BRANCH": "",
                "CI_COMMIT_REF_NAME": name,
                "CI_COMMIT_REF_PROTECTED": "true" if protected else "false",
            },
        )

    def with_variables(self, **variables: str) -> Trigger:
        return Trigger(self.name, {**self.variables, **variables})

    def from_source(self, source: str) -> Trigger:
        """The same ref, started by a schedule, the API, the web UI, a trigger token..."""
        return Trigger(f"{source}: {self.name}", {**self.variables, "CI_PIPELINE_SOURCE": source})

    def args(self) -> list[str]:
        args = [f"--variable={name}={value}" for name, value in self.variables.items()]
        if self.variables:
            args.append(f"--ignore-predefined-vars={','.join(self.variables)}")
        return args


def run(
    *args: str, check: bool = True, timeout: float = 120, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """gitlab-ci-local in the repository (its --cwd must be relative, so we chdir instead)."""
    result = subprocess.run(
        [str(GITLAB_CI_LOCAL), "--no-color", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else dict(env),
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"gitlab-ci-local {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def listed_jobs(trigger: Trigger, ci_file: Path = CI_FILE) -> dict[str, dict[str, Any]]:
    """Every job of the pipeline with its evaluated `when` (`never` included), by name."""
    result = run(
        "--list-json",
        "--no-json-schema-validation",
        f"--file={ci_file.relative_to(REPO)}",
        *trigger.args(),
    )
    # Warnings may precede the JSON document on stdout.
    jobs = json.loads(result.stdout[result.stdout.index("[") :])
    return {job["name"]: job for job in jobs}


def jobs_that_run(trigger: Trigger) -> dict[str, str]:
    """The jobs GitLab would create (job name -> when: on_success, manual...)."""
    jobs = listed_jobs(trigger)
    return {name: job["when"] for name, job in jobs.items() if job["when"] != "never"}


class _CiLoader(yaml.SafeLoader):
    """Reads .gitlab-ci.yml, keeping `!reference [a, b]` as the list it names."""


_CiLoader.add_constructor("!reference", lambda loader, node: loader.construct_sequence(node))


def load_ci_file(path: Path = CI_FILE) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CiLoader)  # a SafeLoader subclass


def pipeline_is_created(trigger: Trigger) -> bool:
    """Whether GitLab creates a pipeline at all: our workflow:rules, gitlab-ci-local's evaluator."""
    rules = load_ci_file()["workflow"]["rules"]
    probe = STATE_DIR / "probe" / "workflow.gitlab-ci.yml"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(yaml.safe_dump({"workflow-decision": {"script": [":"], "rules": rules}}))
    when = listed_jobs(trigger, ci_file=probe)["workflow-decision"]["when"]
    return when != "never"


def pipeline(trigger: Trigger) -> dict[str, str] | None:
    """The jobs of the pipeline GitLab would create for `trigger`, or None when it creates none."""
    return jobs_that_run(trigger) if pipeline_is_created(trigger) else None


def pipeline_variables(trigger: Trigger) -> dict[str, str]:
    """PUSH, REGISTRY... as every job of `trigger`'s pipeline sees them: a probe job with our
    workflow rules and global variables, run by gitlab-ci-local's shell executor."""
    ci = load_ci_file()
    echo = " ".join(f"{name}=${name}" for name in WORKFLOW_VARIABLES)
    probe = STATE_DIR / "probe" / "variables.gitlab-ci.yml"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(
        yaml.safe_dump(
            {
                "workflow": {"rules": ci["workflow"]["rules"]},
                "variables": ci["variables"],
                "workflow-variables": {"script": [f'echo "decided: {echo}"']},
            }
        )
    )
    result = run(
        f"--file={probe.relative_to(REPO)}",
        "--force-shell-executor",
        "--no-json-schema-validation",
        *trigger.with_variables(
            GCP_REGION="region",
            GCP_PROJECT="project",
            GCP_BUILDER_SERVICE_ACCOUNT="branch-builder",
            GCP_RELEASE_BUILDER_SERVICE_ACCOUNT="release-builder",
        ).args(),
        "workflow-variables",
    )
    (line,) = [line for line in result.stdout.splitlines() if "> decided: " in line]
    pairs = line.split("> decided: ", 1)[1].split(" ")
    return dict(pair.split("=", 1) for pair in pairs)


@dataclass(frozen=True)
class JobRun:
    jobs: str
    output: str

    def passed(self, job: str) -> bool:
        """gitlab-ci-local's summary says PASS (FAIL, or WARN for an allowed failure, otherwise)."""
        return any(line.startswith(f" PASS  {job}") for line in self.output.splitlines())

    def failed(self, job: str) -> bool:
        return any(line.startswith(f" FAIL  {job}") for line in self.output.splitlines())
