"""Where this process is in its life: starting, ready, then draining.

Readiness belongs to the server process, not to a request, so it lives here and not in app.py:
gunicorn.conf.py flips it from its worker hooks and /readyz only reads it.
"""

import enum
import threading


class Phase(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


class Lifecycle:
    """Moves only forward (starting -> ready -> draining); safe to call from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phase = Phase.STARTING

    @property
    def phase(self) -> Phase:
        return self._phase

    def mark_ready(self) -> None:
        with self._lock:
            if self._phase is Phase.STARTING:
                self._phase = Phase.READY

    def mark_draining(self) -> None:
        with self._lock:
            self._phase = Phase.DRAINING


# One per worker process: gunicorn forks after import, so each worker has its own copy.
LIFECYCLE = Lifecycle()
