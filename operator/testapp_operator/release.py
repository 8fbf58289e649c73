"""The TestAppRelease spec as frozen values, parsed once (pure: no I/O).

Public interface:
- `Release.from_body(body) -> Release`: parse a TestAppRelease (dict as Kopf or the API gives it).
  CRD defaults are filled in when absent (an object stored before a field existed).
- `Release.snapshot -> Snapshot`: the Pod-template inputs the spec asks for.
- `Snapshot(image, tag, labels, resources, digest, variables)`: what a revision records.
  `to_data()` is its one serialization: the ControllerRevision `data`, equality's `fingerprint`,
  the CLI's preview and the "revision created" event all read it; `from_data()` reads it back and
  `from_spec()` reads the same fields from a spec. Labels and resources are sorted tuples, so two
  snapshots are equal exactly when they would render the same Pod template. `reference` is what
  the container runs: `image:tag`, or `image:tag@digest` when pinned by digest. A Pod-template
  field is added here (field, `to_data`, `_read`), in render.py, in the CRD and in the docs.
- `Resources(requests, limits)`: container requests/limits as sorted (name, quantity) pairs.
- `Peer(namespace_labels, pod_labels)`: one source allowed to reach the `http` port, a
  NetworkPolicy peer with matchLabels selectors; `DEFAULT_INGRESS_FROM` when the spec names none.
- `ReleaseError(field, message)`: bad input that slipped past the API server (an older CRD, a
  hand-made ControllerRevision); `str()` names the field, e.g. "spec.tag: must match ...".
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from testapp_operator import CHANGE_CAUSE_ANNOTATION, GROUP
from testapp_operator.canary import Canary, Command, StrategyError, parse_strategy

ENVS = ("dev", "stg", "ppd", "prd")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
# A ':' with no '/' after it is a tag in the last path segment ("host:5000/app" is fine).
IMAGE_TAG_RE = re.compile(r":[^/]*$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
MAX_LABELS = 32
LABEL_VALUE_MAX = 63
# spec.variables: the container's environment variables, C-identifier names, in the given order.
VARIABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_VARIABLES = 64
VARIABLE_NAME_MAX = 128
VARIABLE_VALUE_MAX = 4096
# Set by the operator on every Pod (render.deployment); a release may not override them.
RESERVED_VARIABLES = ("APP_ENV", "APP_VERSION")


@dataclass(frozen=True)
class Bounds:
    """An integer field's allowed range and its default, as the CRD declares them."""

    low: int
    high: int | None
    default: int | None = None


REPLICAS = Bounds(0, 100, 1)
HISTORY_LIMIT = Bounds(1, 100, 10)
PROGRESS_DEADLINE = Bounds(10, 3600, 180)
PIN = Bounds(1, None)
_GENERATION = Bounds(0, None, 0)
_STEP = Bounds(0, None)
# Keys the operator owns on every object it produces; a release may not override them.
RESERVED_LABELS = ("app", "env")
RESERVED_LABEL_PREFIXES = ("app.kubernetes.io/", "pod-security.kubernetes.io/")

Pairs = tuple[tuple[str, str], ...]
# Namespaces a cluster admin labels so (an ingress controller's, a client's) reach the `http` port.
CLIENT_NAMESPACE_LABEL = f"{GROUP}/client"
MAX_PEERS = 16


class ReleaseError(ValueError):
    """A field holds a value the operator cannot use; retrying will not fix it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Resources:
    """Container resource requests and limits, as sorted (resource name, quantity) pairs."""

    requests: Pairs = ()
    limits: Pairs = ()

    @classmethod
    def from_data(cls, data: Any, where: str) -> Resources:
        obj = _mapping(data, where)
        unknown = sorted(set(obj) - {"requests", "limits"})
        if unknown:
            raise ReleaseError(where, f"only requests and limits are supported, not {unknown}")
        return cls(
            requests=_quantities(obj.get("requests", {}), f"{where}.requests"),
            limits=_quantities(obj.get("limits", {}), f"{where}.limits"),
        )

    def to_data(self) -> dict[str, dict[str, str]]:
        data = {"requests": dict(self.requests), "limits": dict(self.limits)}
        return {key: value for key, value in data.items() if value}


DEFAULT_RESOURCES = Resources(
    requests=(("cpu", "50m"), ("memory", "64Mi")),
    limits=(("cpu", "500m"), ("memory", "256Mi")),
)


@dataclass(frozen=True)
class Peer:
    """Who may open connections to the app's `http` port: Pods matching `pod_labels` in
    namespaces matching `namespace_labels`. None leaves that selector out (no namespace selector:
    the release's own namespace; no pod selector: every Pod); () selects everything."""

    namespace_labels: Pairs | None = None
    pod_labels: Pairs | None = None

    @classmethod
    def from_data(cls, data: Any, where: str) -> Peer:
        obj = _mapping(data, where)
        known = {"namespaceSelector", "podSelector"}
        if not obj or set(obj) - known:
            raise ReleaseError(
                where, f"must set namespaceSelector and/or podSelector, not {sorted(obj)}"
            )
        return cls(
            namespace_labels=_selector(obj.get("namespaceSelector"), f"{where}.namespaceSelector"),
            pod_labels=_selector(obj.get("podSelector"), f"{where}.podSelector"),
        )

    def to_data(self) -> dict[str, Any]:
        """The NetworkPolicyPeer, as the API server stores it (no empty matchLabels)."""
        peer = {}
        for key, labels in (
            ("namespaceSelector", self.namespace_labels),
            ("podSelector", self.pod_labels),
        ):
            if labels is not None:
                peer[key] = {"matchLabels": dict(labels)} if labels else {}
        return peer


# Safe by default: no namespace reaches the app until a cluster admin labels it as a client.
DEFAULT_INGRESS_FROM = (Peer(namespace_labels=((CLIENT_NAMESPACE_LABEL, "true"),)),)


@dataclass(frozen=True)
class Snapshot:
    """The Pod-template inputs of one revision: image, tag, labels, resources, digest and
    environment variables (not replicas). With a digest, a rollback to this revision runs the
    very bytes it ran before, whatever the tag points to since."""

    image: str
    tag: str
    labels: Pairs = ()
    resources: Resources = field(default_factory=Resources)
    digest: str | None = None
    variables: Pairs = ()  # (name, value), in the order the spec lists them

    @property
    def image_ref(self) -> str:
        """The image by name, `image:tag` (what people read; status.image)."""
        return f"{self.image}:{self.tag}"

    @property
    def fingerprint(self) -> str:
        """Equal exactly when the snapshots are: names the snapshot a Deployment runs."""
        canonical = json.dumps(self.to_data(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def reference(self) -> str:
        """What the container runs: `image:tag@digest` when pinned (the runtime then pulls by
        digest; the tag stays for people), else `image:tag`."""
        return f"{self.image_ref}@{self.digest}" if self.digest else self.image_ref

    def to_data(self) -> dict[str, Any]:
        """The ControllerRevision `data`: plain JSON. A field added after revisions were stored
        is left out while it is empty, so those revisions read back equal (no new revision on
        upgrade): no digest key without a digest, no variables key without variables."""
        data: dict[str, Any] = {
            "image": self.image,
            "tag": self.tag,
            "labels": dict(self.labels),
            "resources": self.resources.to_data(),
        }
        if self.digest:
            data["digest"] = self.digest
        if self.variables:
            data["variables"] = [{"name": name, "value": value} for name, value in self.variables]
        return data

    @classmethod
    def from_data(cls, data: Any) -> Snapshot:
        """Read a ControllerRevision `data`; raises ReleaseError naming the bad `data.*` field."""
        return cls._read(_mapping(data, "data"), "data", Resources())

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Snapshot:
        """The snapshot a TestAppRelease spec asks for (CRD defaults filled in); raises
        ReleaseError naming the bad `spec.*` field."""
        return cls._read(spec, "spec", DEFAULT_RESOURCES)

    @classmethod
    def _read(cls, obj: Mapping[str, Any], where: str, resources: Resources) -> Snapshot:
        return cls(
            image=_image(obj.get("image"), f"{where}.image"),
            tag=_tag(obj.get("tag"), f"{where}.tag"),
            labels=_labels(obj.get("labels") or {}, f"{where}.labels"),
            resources=(
                Resources.from_data(obj["resources"], f"{where}.resources")
                if obj.get("resources") is not None
                else resources
            ),
            digest=_digest(obj.get("digest"), f"{where}.digest"),
            variables=_variables(obj.get("variables") or [], f"{where}.variables"),
        )


@dataclass(frozen=True)
class Release:
    """One TestAppRelease: identity, the desired snapshot and how to roll it out."""

    name: str
    uid: str
    generation: int
    env: str
    snapshot: (
        Snapshot  # what the spec asks to run now (deployed only when neither pinned nor paused)
    )
    replicas: int = REPLICAS.default
    pin: int | None = None
    history_limit: int = HISTORY_LIMIT.default
    progress_deadline_seconds: int = PROGRESS_DEADLINE.default
    paused: bool = False
    change_cause: str = ""
    retry_at: str | None = None  # re-attempt a Failed latest revision created before this time
    restart_at: str | None = None  # replace the running Pods once per new value (no revision)
    ingress_from: tuple[Peer, ...] = DEFAULT_INGRESS_FROM
    strategy: Canary | None = None  # None: the rolling update (docs/canary.md)
    canary_command: Command | None = None  # spec.canaryCommand: promote-step / abort

    @property
    def namespace(self) -> str:
        """Every object a release produces lives in a namespace named after it."""
        return self.name

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Release:
        """Parse a TestAppRelease body; raises ReleaseError naming the first bad field."""
        metadata = _mapping(body.get("metadata", {}), "metadata")
        spec = _mapping(body.get("spec"), "spec")
        annotations = _mapping(metadata.get("annotations") or {}, "metadata.annotations")
        env = spec.get("env")
        if env not in ENVS:
            raise ReleaseError("spec.env", f"must be one of {', '.join(ENVS)}, not {env!r}")
        pin = spec.get("revision")
        return cls(
            name=_string(metadata.get("name"), "metadata.name"),
            uid=_string(metadata.get("uid"), "metadata.uid"),
            generation=_integer(metadata.get("generation"), "metadata.generation", _GENERATION),
            env=env,
            snapshot=Snapshot.from_spec(spec),
            replicas=_integer(spec.get("replicas"), "spec.replicas", REPLICAS),
            pin=None if pin is None else _integer(pin, "spec.revision", PIN),
            history_limit=_integer(
                spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit", HISTORY_LIMIT
            ),
            progress_deadline_seconds=_integer(
                spec.get("progressDeadlineSeconds"),
                "spec.progressDeadlineSeconds",
                PROGRESS_DEADLINE,
            ),
            paused=_boolean(spec.get("paused", False), "spec.paused"),
            retry_at=_timestamp(spec.get("retryAt"), "spec.retryAt"),
            restart_at=_timestamp(spec.get("restartAt"), "spec.restartAt"),
            change_cause=_string(
                annotations.get(CHANGE_CAUSE_ANNOTATION, ""), "metadata.annotations", empty=True
            ),
            ingress_from=(
                _peers(spec["ingressFrom"], "spec.ingressFrom")
                if spec.get("ingressFrom") is not None
                else DEFAULT_INGRESS_FROM
            ),
            strategy=_strategy(spec.get("strategy")),
            canary_command=_canary_command(spec.get("canaryCommand"), "spec.canaryCommand"),
        )


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ReleaseError(where, f"must be an object, not {type(value).__name__}")
    return value


def _string(value: Any, where: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise ReleaseError(where, f"must be a non-empty string, not {value!r}")
    return value


def _integer(value: Any, where: str, bounds: Bounds) -> int:
    if value is None and bounds.default is not None:
        return bounds.default  # stored before the field had a CRD default
    # bool is an int in Python but never a valid count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReleaseError(where, f"must be an integer, not {value!r}")
    low, high = bounds.low, bounds.high
    if value < low or (high is not None and value > high):
        allowed = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ReleaseError(where, f"must be {allowed}, not {value}")
    return value


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ReleaseError(where, f"must be true or false, not {value!r}")
    return value


def _timestamp(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not TIMESTAMP_RE.match(value):
        raise ReleaseError(
            where, f"must be an RFC 3339 time like 2025-06-01T12:00:00Z, not {value!r}"
        )
    return value


def _image(value: Any, where: str) -> str:
    image = _string(value, where)
    if "@" in image or IMAGE_TAG_RE.search(image):
        raise ReleaseError(where, f"must be a repository without tag or digest, not {image!r}")
    return image


def _tag(value: Any, where: str) -> str:
    tag = _string(value, where)
    if not TAG_RE.match(tag):
        raise ReleaseError(where, f"must match {TAG_RE.pattern}, not {tag!r}")
    return tag


def _digest(value: Any, where: str) -> str | None:
    """Optional: None (absent or null) runs by tag."""
    if value is None:
        return None
    if not isinstance(value, str) or not DIGEST_RE.match(value):
        raise ReleaseError(where, f"must match {DIGEST_RE.pattern} (or be absent), not {value!r}")
    return value


def _strategy(value: Any) -> Canary | None:
    try:
        return parse_strategy(value, "spec.strategy")
    except StrategyError as error:
        raise ReleaseError(error.field, error.message) from None


def _canary_command(value: Any, where: str) -> Command | None:
    """What `kubectl testapp promote-step` / `abort` asked of one canary revision."""
    if value is None:
        return None
    command = _mapping(value, where)
    unknown = sorted(set(command) - {"revision", "promoteStep", "abort"})
    if unknown:
        raise ReleaseError(
            where, f"only revision, promoteStep and abort are supported, not {unknown}"
        )
    step = command.get("promoteStep")
    return Command(
        revision=_integer(command.get("revision"), f"{where}.revision", PIN),
        promote_step=None if step is None else _integer(step, f"{where}.promoteStep", _STEP),
        abort=_boolean(command.get("abort", False), f"{where}.abort"),
    )


def _peers(value: Any, where: str) -> tuple[Peer, ...]:
    if not isinstance(value, list):
        raise ReleaseError(where, f"must be a list of peers, not {type(value).__name__}")
    if len(value) > MAX_PEERS:
        raise ReleaseError(where, f"at most {MAX_PEERS} peers, not {len(value)}")
    return tuple(Peer.from_data(item, f"{where}[{i}]") for i, item in enumerate(value))


def _selector(value: Any, where: str) -> Pairs | None:
    """A label selector with matchLabels only; None when absent."""
    if value is None:
        return None
    selector = _mapping(value, where)
    if set(selector) - {"matchLabels"}:
        raise ReleaseError(where, f"only matchLabels is supported, not {sorted(selector)}")
    labels = _mapping(selector.get("matchLabels") or {}, f"{where}.matchLabels")
    for key, val in labels.items():
        if not _valid_label_key(key):
            raise ReleaseError(f"{where}.matchLabels[{key}]", "is not a valid label key")
        if not isinstance(val, str) or not LABEL_VALUE_RE.match(val):
            raise ReleaseError(f"{where}.matchLabels[{key}]", f"{val!r} is not a valid label value")
    return tuple(sorted(labels.items()))


def _labels(value: Any, where: str) -> Pairs:
    labels = _mapping(value, where)
    if len(labels) > MAX_LABELS:
        raise ReleaseError(where, f"at most {MAX_LABELS} labels, not {len(labels)}")
    for key, val in labels.items():
        if not _valid_label_key(key):
            raise ReleaseError(f"{where}[{key}]", "is not a valid label key")
        if key in RESERVED_LABELS or key.startswith(RESERVED_LABEL_PREFIXES):
            raise ReleaseError(f"{where}[{key}]", "is set by the operator and cannot be overridden")
        if not isinstance(val, str) or len(val) > LABEL_VALUE_MAX or not LABEL_VALUE_RE.match(val):
            raise ReleaseError(f"{where}[{key}]", f"{val!r} is not a valid label value")
    return tuple(sorted(labels.items()))


def _variables(value: Any, where: str) -> Pairs:
    if not isinstance(value, list):
        raise ReleaseError(where, f"must be a list of {{name, value}}, not {type(value).__name__}")
    if len(value) > MAX_VARIABLES:
        raise ReleaseError(where, f"at most {MAX_VARIABLES} variables, not {len(value)}")
    pairs: dict[str, str] = {}
    for i, item in enumerate(value):
        variable = _mapping(item, f"{where}[{i}]")
        unknown = sorted(set(variable) - {"name", "value"})
        if unknown:
            raise ReleaseError(f"{where}[{i}]", f"only name and value are supported, not {unknown}")
        name, text = variable.get("name"), variable.get("value")
        if (
            not isinstance(name, str)
            or len(name) > VARIABLE_NAME_MAX
            or not VARIABLE_NAME_RE.match(name)
        ):
            raise ReleaseError(
                f"{where}[{i}].name",
                f"must match {VARIABLE_NAME_RE.pattern} (at most {VARIABLE_NAME_MAX}), "
                f"not {name!r}",
            )
        if name in RESERVED_VARIABLES:
            raise ReleaseError(f"{where}[{i}].name", f"{name} is set by the operator")
        if name in pairs:
            raise ReleaseError(f"{where}[{i}].name", f"{name} is listed twice")
        if not isinstance(text, str) or len(text) > VARIABLE_VALUE_MAX:
            raise ReleaseError(
                f"{where}[{i}].value",
                f"must be a string of at most {VARIABLE_VALUE_MAX} characters, not {text!r:.40}",
            )
        pairs[name] = text
    return tuple(pairs.items())


def _valid_label_key(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    prefix, _, name = key.rpartition("/")
    if "/" in key and (len(prefix) > 253 or not LABEL_PREFIX_RE.match(prefix)):
        return False
    return bool(LABEL_NAME_RE.match(name))


def _quantities(value: Any, where: str) -> Pairs:
    quantities = _mapping(value, where)
    pairs = []
    for name, quantity in quantities.items():
        # The API server accepts int-or-string quantities; a revision stores them as strings.
        if isinstance(quantity, bool) or not isinstance(quantity, int | float | str):
            raise ReleaseError(f"{where}.{name}", f"must be a quantity, not {quantity!r}")
        pairs.append((name, str(quantity)))
    return tuple(sorted(pairs))
