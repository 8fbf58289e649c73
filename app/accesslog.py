"""One JSON line per request, as a plain falcon middleware.

Plain falcon so that hug (app.py) and the bare-falcon benchmark app use the very same code and
the benchmark compares the frameworks, not the logging.
"""

import json
import sys
import time
from typing import IO, Any


class AccessLog:
    def __init__(self, stream: IO[str] | None = None, **static: str) -> None:
        self._stream = stream
        self._static = static

    def process_request(self, req: Any, resp: Any) -> None:
        req.context.started = time.perf_counter()

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        started = getattr(req.context, "started", None)
        elapsed_ms = 0.0 if started is None else (time.perf_counter() - started) * 1000
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **self._static,
            "method": req.method,
            "path": req.path,
            "status": int(str(resp.status).split(" ", 1)[0]),
            "duration_ms": round(elapsed_ms, 3),
            "remote": req.remote_addr,
            "user_agent": req.user_agent,
        }
        # Looked up per call so pytest's capsys (which swaps sys.stdout) sees the lines.
        stream = self._stream or sys.stdout
        stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        stream.flush()
