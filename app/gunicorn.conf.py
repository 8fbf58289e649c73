"""gunicorn settings for test-app, every one overridable through the environment.

Shutdown sequence on SIGTERM (kubelet -> gunicorn master -> workers):
  1. each worker flips to draining: /readyz answers 503 so Kubernetes takes the Pod out of the
     Service endpoints, while every other route keeps serving;
  2. after DRAIN_SECONDS the worker stops accepting and finishes the requests in flight;
  3. the master waits up to GRACEFUL_TIMEOUT for that before it SIGKILLs stragglers.
Keep DRAIN_SECONDS < GRACEFUL_TIMEOUT < the Pod's terminationGracePeriodSeconds (default 30).

Metrics: every worker is a process with its own counters, so prometheus_client runs in its
multiprocess mode: each worker writes its values to files in PROMETHEUS_MULTIPROC_DIR and
/metrics (any worker) adds them all up. The directory is set here, in the master, before any
worker imports prometheus_client (which picks its mode at import), and emptied at every start:
a restarted server must not count the requests of the one before it.
"""

import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from lifecycle import LIFECYCLE, Phase

bind = os.environ.get("BIND", "0.0.0.0:8000")
# gthread: a slow request cannot starve the probes, and HTTP keep-alive works behind a Service.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("THREADS", "4"))
keepalive = int(os.environ.get("KEEPALIVE", "5"))
timeout = int(os.environ.get("TIMEOUT", "30"))
drain_seconds = float(os.environ.get("DRAIN_SECONDS", "5"))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "20"))
# The heartbeat file on tmpfs: works with a read-only root filesystem and never blocks on disk.
worker_tmp_dir = "/dev/shm"
# The app writes its own JSON access line; gunicorn's own messages go to stderr.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")

# Given (a test's): emptied and kept. Not given: made here and removed when the server exits.
metrics_dir_given = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
if metrics_dir_given:
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()
else:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix="test-app-metrics-", dir=worker_tmp_dir
    )


def post_worker_init(worker) -> None:
    """The app is imported and the worker is about to serve: ready, and drain on SIGTERM."""
    LIFECYCLE.mark_ready()

    def stop_accepting() -> None:
        worker.alive = False  # the worker loop exits, then waits for in-flight requests

    def drain(signum: int, frame: object) -> None:
        if LIFECYCLE.phase is Phase.DRAINING:
            return
        LIFECYCLE.mark_draining()
        worker.log.info("draining for %.1fs before stopping", drain_seconds)
        timer = threading.Timer(drain_seconds, stop_accepting)
        timer.daemon = True
        timer.start()

    # Replaces gunicorn's handler, which would stop accepting at once.
    signal.signal(signal.SIGTERM, drain)


def child_exit(server, worker) -> None:
    """A worker ended: its counters stay (they only grow), its live gauges go."""
    # Not imported at the top: the workers fork from the master, and a prometheus_client it had
    # imported before the directory was set would be in single-process mode in all of them.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if not metrics_dir_given:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
