"""The audit-log reader the tests and benchmarks count writes with: whole lines only, at both
ends (the API server writes while they read)."""

from __future__ import annotations

import json
from pathlib import Path

from testapp_dev.cluster import AuditLog

LINE = json.dumps({"stage": "ResponseComplete", "userAgent": "testapp-operator/1"}) + "\n"


def test_a_mark_taken_halfway_through_a_line_starts_at_the_next_whole_one(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text(LINE + LINE[:10])  # the server is halfway through its second line
    log = AuditLog(path)
    mark = log.mark()
    with path.open("a") as appending:
        appending.write(LINE[10:] + LINE)

    assert len(log.writes_since(mark)) == 1
    assert len(log.writes_since(0)) == 3
    assert len(log.writes_since(len(LINE))) == 2


def test_a_line_not_yet_finished_is_left_for_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text(LINE + LINE[:10])
    assert len(AuditLog(path).writes_since(0)) == 1
