"""What `kubectl testapp` shows: records, kubectl-style tables, JSON/YAML, diffs (pure: no I/O).

A record is the plain dict `-o json|yaml` prints; the table is drawn from the same records, so the
two never disagree.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from testapp_operator.cli.core import env_of, history_of, split_image
from testapp_operator.release import ENVS

Body = Mapping[str, Any]
OUTPUTS = ("table", "wide", "json", "yaml")


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """kubectl-style columns: left aligned, three spaces apart, no trailing blanks."""
    cells = [list(headers)] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ("   ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells)
    return "\n".join(line.rstrip() for line in lines)


def human_age(created: str | None, now: datetime) -> str:
    """kubectl's short age (45s, 3m20s, 5h, 12d) from an RFC3339 timestamp."""
    if not created:
        return "-"
    start = datetime.fromisoformat(created.replace("Z", "+00:00"))
    seconds = max(0, int((now - start).total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d" if days < 730 else f"{days // 365}y"


def format_output(data: Any, output: str, table: Callable[[bool], str]) -> str:
    """JSON or YAML of the records, else the table (`wide`: with its extra columns)."""
    if output == "json":
        return json.dumps(data, indent=2)
    if output == "yaml":
        import yaml  # only when asked: it is a fifth of the plugin's start time

        return yaml.safe_dump(data, sort_keys=False).rstrip("\n")
    return table(output == "wide")


# --- status ----------------------------------------------------------------------------------


def _env_rank(body: Body) -> tuple[int, str]:
    env = (body.get("spec") or {}).get("env") or env_of(body["metadata"]["name"])
    rank = ENVS.index(env) if env in ENVS else len(ENVS)
    return rank, body["metadata"]["name"]


def _ready_message(status: Mapping[str, Any]) -> str | None:
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return ready.get("message")


def status_record(body: Body) -> dict[str, Any]:
    """What runs (from status) and what the spec wants, for one release."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    record = {
        "name": body["metadata"]["name"],
        "env": spec.get("env"),
        "tag": split_image(status["image"])[1] if status.get("image") else None,
        "wantedTag": spec.get("tag"),
        "image": status.get("image"),
        "revision": status.get("revision"),
        "readyReplicas": status.get("readyReplicas") or 0,
        "desiredReplicas": spec.get("replicas"),
        "pinned": bool(status.get("pinned")),
        "paused": bool(spec.get("paused")),
        "phase": status.get("phase"),
        "message": _ready_message(status),
        "created": body["metadata"].get("creationTimestamp"),
    }
    if isinstance(status.get("canary"), Mapping):
        record["canary"] = dict(status["canary"])  # as the operator wrote it (docs/canary.md)
    return record


def status_records(
    releases: Iterable[Body], pods_of: Callable[[str], list[Body]] | None = None
) -> list[dict[str, Any]]:
    """One record per release in pipeline order (dev, stg, ppd, prd): what runs where; with
    `pods_of` (release name -> its namespace's Pods), also what the kubelet says of its Pods."""
    records = [status_record(body) for body in sorted(releases, key=_env_rank)]
    if pods_of is not None:
        for record in records:
            record["pods"] = pod_problems(pods_of(record["name"]))
    return records


def pod_problems(pods: Iterable[Body]) -> str | None:
    """The Pods that are not Ready, counted by the reason the kubelet gives (a container's
    waiting reason, e.g. CrashLoopBackOff), else "not Ready"; None when every Pod is Ready."""
    counts: dict[str, int] = {}
    for pod in pods:
        status = pod.get("status") or {}
        if pod["metadata"].get("deletionTimestamp"):
            continue
        conditions = status.get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            continue
        waiting = [
            s["state"]["waiting"].get("reason")
            for s in status.get("containerStatuses") or []
            if "waiting" in (s.get("state") or {})
        ]
        reason = next((r for r in waiting if r), "not Ready")
        counts[reason] = counts.get(reason, 0) + 1
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items())) or None


def status_table(records: Sequence[Mapping[str, Any]], now: datetime, wide: bool = False) -> str:
    headers = ["ENV", "TAG", "REVISION", "READY", "PINNED", "PHASE", "AGE"]
    pods = wide and any("pods" in r for r in records)
    if pods:
        headers += ["PODS"]
    if wide:
        headers += ["WANTED", "IMAGE", "MESSAGE"]
    canaries = wide and any("canary" in r for r in records)
    if canaries:
        headers += CANARY_COLUMNS
    rows = []
    for r in records:
        row = [
            r["env"],
            r["tag"],
            r["revision"],
            f"{r['readyReplicas']}/{r['desiredReplicas']}",
            str(r["pinned"]).lower(),
            r["phase"],
            human_age(r["created"], now),
        ]
        if pods:
            row += [r.get("pods")]
        if wide:
            held_back = r["wantedTag"] if r["wantedTag"] != r["tag"] else None
            row += [held_back, r["image"], r["message"]]
        if canaries:
            row += canary_cells(r.get("canary"))
        rows.append(row)
    return format_table(headers, rows)


# After the wide columns, and only when a release shown has a canary: its step (3/5), weight,
# last analysis measurement and phase (Paused with its reason).
CANARY_COLUMNS = ["STEP", "WEIGHT", "ANALYSIS", "CANARY"]


def canary_cells(canary: Mapping[str, Any] | None) -> list[str | None]:
    """STEP, WEIGHT, ANALYSIS, CANARY of one status.canary (None: a release without one)."""
    if not canary:
        return [None] * len(CANARY_COLUMNS)
    step, steps = canary.get("step"), canary.get("steps")
    if isinstance(step, int) and isinstance(steps, int):
        position = f"{min(step + 1, steps)}/{steps}"  # step == steps once every step passed
    else:
        position = None
    weight = canary.get("weight")
    analysis = canary.get("analysis") or {}
    last = [analysis.get("lastValue"), analysis.get("lastResult")]
    measured = " ".join(str(v) for v in last if v not in (None, "")) or None
    phase = canary.get("phase")
    if phase and canary.get("pauseReason"):
        phase = f"{phase}:{canary['pauseReason']}"
    return [position, None if weight is None else f"{weight}%", measured, phase]


# --- history: revisions and deployments -----------------------------------------------------


def revision_records(body: Body) -> list[dict[str, Any]]:
    running = (body.get("status") or {}).get("revision")
    return [{**entry, "deployed": entry.get("revision") == running} for entry in history_of(body)]


def deployment_records(body: Body) -> list[dict[str, Any]]:
    """The deployment log (status.deployments), newest first whatever order was stored."""
    log = (body.get("status") or {}).get("deployments") or []
    return sorted(log, key=lambda entry: entry.get("at") or "", reverse=True)


def history_record(body: Body) -> dict[str, Any]:
    return {
        "name": body["metadata"]["name"],
        "revisions": revision_records(body),
        "deployments": deployment_records(body),
    }


def _image_ref(entry: Mapping[str, Any]) -> str | None:
    if not entry.get("image"):
        return None
    ref = f"{entry['image']}:{entry.get('tag')}"
    return f"{ref}@{entry['digest']}" if entry.get("digest") else ref


def history_table(record: Mapping[str, Any], wide: bool = False) -> str:
    # The unnamed first column marks the deployed revision, like `kubectl config get-contexts`.
    headers = ["", "REVISION", "TAG", "CREATED", "CAUSE", "OUTCOME"]
    if wide:
        headers += ["IMAGE"]
    rows = []
    for r in record["revisions"]:
        row = [
            "*" if r["deployed"] else "",
            r.get("revision"),
            r.get("tag"),
            r.get("created"),
            r.get("changeCause"),
            r.get("outcome"),
        ]
        rows.append([*row, _image_ref(r)] if wide else row)
    revisions = format_table(headers, rows)
    headers = ["WHEN", "ACTION", "REVISION", "TAG", "BY", "CAUSE", "OUTCOME"]
    if wide:
        headers += ["CLIENT", "IMAGE"]
    rows = []
    for e in record["deployments"]:
        row = [
            e.get("at"),
            e.get("action"),
            e.get("revision"),
            e.get("tag"),
            e.get("by"),
            e.get("cause"),
            e.get("outcome"),
        ]
        rows.append([*row, e.get("client"), _image_ref(e)] if wide else row)
    deployments = format_table(headers, rows) if rows else "no deployments recorded yet"
    return f"{revisions}\n\nDEPLOYMENTS (newest first)\n{deployments}"


def revision_diff(left: str, right: str, data_left: Any, data_right: Any) -> str:
    """Unified diff of two revision snapshots as YAML; empty when they are the same."""
    import yaml

    lines_a = yaml.safe_dump(data_left, sort_keys=True).splitlines(keepends=True)
    lines_b = yaml.safe_dump(data_right, sort_keys=True).splitlines(keepends=True)
    return "".join(difflib.unified_diff(lines_a, lines_b, fromfile=left, tofile=right))


def spec_snapshot(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The snapshot a spec would record as a revision (the shape of ControllerRevision data)."""
    from testapp_operator import release

    return release.Snapshot.from_spec(spec).to_data()
