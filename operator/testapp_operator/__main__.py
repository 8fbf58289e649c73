"""`python -m testapp_operator`: run the operator against $KUBECONFIG's cluster, or in-cluster.

Every flag has an environment variable, for the Deployment in k8s/operator/.
"""

from __future__ import annotations

import argparse
import logging
import os
import random

import kopf

from testapp_operator import OPERATOR_NAME, health, metrics
from testapp_operator import handlers as _registers_the_kopf_handlers  # noqa: F401

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")


def env_flag(name: str) -> bool:
    """A boolean from the environment: unset or one of FALSE is off, one of TRUE is on (any case);
    anything else is an error naming the variable, never a guess."""
    value = os.environ.get(name, "").strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ValueError(
        f"{name}={os.environ[name]!r} is not a boolean: use one of {', '.join(TRUE)} "
        f"or {', '.join(f for f in FALSE if f)} (or leave it empty)"
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m testapp_operator", description=__doc__)
    try:
        verbose, standalone = env_flag("TESTAPP_VERBOSE"), env_flag("TESTAPP_STANDALONE")
    except ValueError as error:
        parser.error(str(error))
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=env("TESTAPP_LOG_FORMAT", "text"),
        help="json: one JSON object per line (env TESTAPP_LOG_FORMAT)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=verbose,
        help="log Kopf's own decisions too (env TESTAPP_VERBOSE)",
    )
    parser.add_argument(
        "--liveness",
        default=env("TESTAPP_LIVENESS"),
        help="serve Kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--readiness",
        default=env("TESTAPP_READINESS"),
        help="serve the readiness probe (active: watching; standby: ready to take over), "
        "e.g. http://0.0.0.0:8082/readyz (env TESTAPP_READINESS)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(env("TESTAPP_METRICS_PORT", "8081")),
        help="Prometheus /metrics port; 0 disables (env TESTAPP_METRICS_PORT)",
    )
    parser.add_argument(
        "--prometheus",
        default=env("TESTAPP_PROMETHEUS_URL"),
        help="the Prometheus a canary's analysis asks, e.g. http://prometheus:9090 "
        "(env TESTAPP_PROMETHEUS_URL)",
    )
    parser.add_argument(
        "--peering",
        default=env("TESTAPP_PEERING", OPERATOR_NAME),
        help="ClusterKopfPeering name shared by the replicas (env TESTAPP_PEERING)",
    )
    parser.add_argument(
        "--priority",
        type=int,
        # Kopf pauses every peer that sees another of the same priority, so replicas of one
        # Deployment must differ: a random one unless told (env TESTAPP_PRIORITY).
        default=int(env("TESTAPP_PRIORITY", "0")) or random.randint(1, 2**31),
        help="peering priority: the highest active replica works, the others wait",
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        default=standalone,
        help="no peering: for a single local process (env TESTAPP_STANDALONE)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    log_format = kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(verbose=args.verbose, log_format=log_format)
    if not args.verbose:
        # Kopf logs every handled watch event; our own logger has one line per decision.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    kopf.run(
        clusterwide=True,
        standalone=args.standalone,
        priority=args.priority,
        # Naming a peering makes it mandatory in Kopf, even when standalone.
        peering_name=None if args.standalone else args.peering,
        liveness_endpoint=args.liveness,
        memo=kopf.Memo(
            readiness=args.readiness,
            standalone=args.standalone,
            peering=args.peering,
            priority=args.priority,
            prometheus=args.prometheus,
            watch_clock=health.WatchClock(),
        ),
    )


if __name__ == "__main__":
    main()
