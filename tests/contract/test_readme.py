"""The README tells the truth by construction: its module map is the package, its benchmark
table is bench/results.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

from testapp_dev import scripts

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "testapp_operator"
readme_table = scripts.load("readme_table", "bench/readme_table.py")


def module_map(readme: str) -> set[str]:
    """The files the README's "How it works" map names, as paths inside the package."""
    block = readme.split("## How it works", 1)[1].split("```", 2)[1]
    named, folder = set(), ""
    for line in block.splitlines():
        if match := re.match(r"^  (\s*)(\S+/|\S+\.py)\s", line + " "):
            indent, name = match.groups()
            if name.endswith("/"):
                folder = name
            else:
                named.add((folder if indent else "") + name)
                folder = folder if indent else ""
    return named


def test_the_module_map_names_every_module_of_the_package_and_no_other() -> None:
    on_disk = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")}
    assert module_map((REPO / "README.md").read_text()) == on_disk


def test_the_benchmark_table_is_the_one_bench_results_gives() -> None:
    readme = (REPO / "README.md").read_text()
    results = json.loads((REPO / "bench" / "results.json").read_text())
    assert readme_table.rewritten(readme, results) == readme, (
        "the README's benchmark table is stale: `python bench/readme_table.py` rewrites it"
    )


def test_a_changed_figure_makes_the_table_stale() -> None:
    readme = (REPO / "README.md").read_text()
    results = json.loads((REPO / "bench" / "results.json").read_text())
    results["operator_rss_mb"] = 999.9
    rewritten = readme_table.rewritten(readme, results)
    assert rewritten != readme
    assert "| 999.9 MiB | ≤ 120, missed |" in rewritten
