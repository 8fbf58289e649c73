"""One JSON line per request, as a plain falcon middleware.

Plain falcon so that hug (app.py) and the bare-falcon benchmark app use the very same code and
the benchmark compares the frameworks, not the logging.
"""

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any


class AccessLog:
    def __init__(self, **static: str) -> None:
        self._static = static  # fields on every line, e.g. app and env

    def process_request(self, req: Any, resp: Any) -> None:
        req.context.started = time.perf_counter()

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        started = getattr(req.context, "started", None)
        elapsed_ms = 0.0 if started is None else (time.perf_counter() - started) * 1000
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            **self._static,
            "method": req.method,
            "path": req.path,
            "status": int(str(resp.status).split(" ", 1)[0]),
            "duration_ms": round(elapsed_ms, 3),
            "remote": req.remote_addr,
            "user_agent": req.user_agent,
        }
        # One write per line so threads never interleave; flushed so `kubectl logs` is live.
        # sys.stdout is looked up per call: pytest's capsys swaps it.
        sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
        sys.stdout.flush()
