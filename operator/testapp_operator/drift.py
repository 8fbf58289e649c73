"""Whether an object on the server already is what we would apply (pure: no I/O).

A reconcile that finds nothing to change must make no write, so before a server-side apply we ask
`needs_apply(desired, observed)`: every field we render must hold the rendered value (the server
may add defaults around it), and no label or top-level spec field we applied earlier may linger
after we stopped rendering it (those are the fields a spec change can remove: a label dropped from
spec.labels, a NetworkPolicy's `ingress` when spec.ingressFrom is emptied; our managedFields say
which we own).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes.utils import parse_quantity

from testapp_operator import FIELD_MANAGER

# Maps whose keys we may stop rendering, as paths; a key we own there and no longer render must go.
REMOVABLE_PATHS = (("metadata", "labels"), ("spec", "template", "metadata", "labels"), ("spec",))


def needs_apply(desired: Mapping[str, Any], observed: Mapping[str, Any] | None) -> bool:
    """True when applying `desired` would change `observed` (None: the object is missing)."""
    if observed is None:
        return True
    if not _contains(observed, desired, ()):
        return True
    owned = _owned_fields(observed)
    if owned is None:
        return False
    for path in REMOVABLE_PATHS:
        wanted = set(_at(desired, path) or {})
        if not _owned_keys(owned, path) <= wanted:
            return True
    return False


def compact(observed: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator keeps of an observed object: all of it but managedFields, of which only
    what `needs_apply` reads (the keys our manager owns under REMOVABLE_PATHS).

    The indexes hold one body per child of every release, and managedFields are half of a body's
    memory (each field is a nested dict), so keeping them whole doubled the operator's footprint.
    Top-level parts are shared with `observed`, not copied.
    """
    owned = _owned_fields(observed)
    metadata = dict(observed.get("metadata") or {})
    metadata.pop("managedFields", None)
    if owned is not None:
        kept: dict[str, Any] = {}
        for path in REMOVABLE_PATHS:
            keys = _owned_keys(owned, path)
            if keys:
                node = kept
                for part in path:
                    node = node.setdefault(f"f:{part}", {})
                for key in keys:
                    node.setdefault(f"f:{key}", {})
        metadata["managedFields"] = [
            {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": kept}
        ]
    return {**observed, "metadata": metadata}


def _contains(observed: Any, desired: Any, path: tuple[str, ...]) -> bool:
    if isinstance(desired, Mapping):
        if not isinstance(observed, Mapping):
            return False
        return all(
            key in observed and _contains(observed[key], value, (*path, key))
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(observed, list) or len(observed) != len(desired):
            return False
        return all(_contains(o, d, path) for o, d in zip(observed, desired, strict=True))
    if "resources" in path and isinstance(desired, str) and isinstance(observed, str):
        # The server normalises quantities ("0.5" is stored as "500m").
        return _same_quantity(observed, desired)
    return observed == desired


def _same_quantity(observed: str, desired: str) -> bool:
    try:
        return parse_quantity(observed) == parse_quantity(desired)
    except ValueError:
        return observed == desired


def _owned_fields(observed: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Our manager's fieldsV1 (the Apply entry), or None when we never applied this object."""
    for entry in (observed.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply":
            return entry.get("fieldsV1") or {}
    return None


def _owned_keys(fields: Mapping[str, Any], path: tuple[str, ...]) -> set[str]:
    node: Any = fields
    for part in path:
        node = node.get(f"f:{part}") if isinstance(node, Mapping) else None
        if node is None:
            return set()
    return {key[2:] for key in node if key.startswith("f:")}


def _at(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = obj
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node
