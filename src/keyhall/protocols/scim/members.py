"""Group membership operations of a SCIM PATCH (RFC 7644 §3.5.2), as set changes.

A group can hold tens of thousands of members, so Keyhall does not load them into a resource to
patch it: the operations on ``members`` are read here as additions and removals of user ids,
which the store applies as a few set-based statements, and only the other operations are applied
to the group resource. The body has been validated as a whole (``resources.parse_patch``) before.

Recognised shapes (each also with capitalised op names, Entra ID's habit):

- ``{"op": "add", "path": "members", "value": [{"value": id}, ...]}``
- ``{"op": "replace", "path": "members", "value": [...]}`` — the members become exactly these
- ``{"op": "remove", "path": "members"}`` — every member goes (§3.5.2.2)
- ``{"op": "remove", "path": "members", "value": [{"value": id}]}`` — Entra ID: these go
- ``{"op": "remove", "path": "members[value eq \"id\"]"}`` — filtered path (``or`` of ``eq``)
- ``{"op": "add"|"replace", "value": {"members": [...], "displayName": ...}}`` — no path (Okta)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from scim2_models import SCIMException, ScimFilter
from scim2_models.path.expressions import Comparison, FilterNode, LogicalExpr, ValuePath

from keyhall.protocols.scim.resources import scim_invalid

Kind = Literal["add", "remove", "replace", "clear"]


@dataclass(frozen=True)
class MemberChange:
    kind: Kind
    user_ids: tuple[str, ...] = ()
    displays: tuple[tuple[str, str], ...] = ()  # (user id, display) the directory sent with them


@dataclass
class SplitPatch:
    members: list[MemberChange] = field(default_factory=list)
    #: the remaining operations, as a PatchOp body (None when every operation was on members)
    rest: dict[str, Any] | None = None


def _change(kind: Kind, value: Any) -> MemberChange:
    items = value if isinstance(value, list) else [value]
    ids: list[str] = []
    displays: list[tuple[str, str]] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("value"), str) or not item["value"]:
            raise scim_invalid("members: each member is an object with a string value", scim_type="invalidValue",
                               field="members")
        ids.append(item["value"])
        if isinstance(item.get("display"), str) and item["display"]:
            displays.append((item["value"], item["display"][:512]))
    return MemberChange(kind, tuple(ids), tuple(displays))


def _filtered_ids(path: str) -> tuple[str, ...]:
    try:
        node = ScimFilter(path).ast
    except (SCIMException, ValueError):
        raise scim_invalid(f"path: {path!r} is not a valid path", scim_type="invalidPath", field="path") from None
    if not isinstance(node, ValuePath) or node.attr_path.attr.lower() != "members" or node.sub_attr:
        raise scim_invalid(f"path: {path!r} is not supported for members", scim_type="invalidPath", field="path")
    return tuple(_eq_values(node.val_filter, path))


def _eq_values(node: FilterNode, path: str) -> list[str]:
    if isinstance(node, Comparison) and node.attr_path.attr.lower() == "value" and node.op.value == "eq" \
            and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, LogicalExpr) and node.op.value == "or":
        return [v for term in node.terms for v in _eq_values(term, path)]
    raise scim_invalid(f"path: members can be selected only by value eq (got {path!r})", scim_type="invalidFilter",
                       field="path")


def split_group_patch(body: dict[str, Any]) -> SplitPatch:
    """Member changes, in order, and the PatchOp body of everything else."""
    split = SplitPatch()
    rest: list[dict[str, Any]] = []
    for operation in body.get("Operations") or body.get("operations") or []:
        op = str(operation.get("op", "")).lower()
        path = operation.get("path")
        value = operation.get("value")
        if isinstance(path, str) and path.strip().lower().startswith("members"):
            path = path.strip()
            if "[" in path:
                if op != "remove":
                    raise scim_invalid("path: a filtered members path is accepted only by remove",
                                       scim_type="invalidPath", field="path")
                split.members.append(MemberChange("remove", _filtered_ids(path)))
            elif path.lower() != "members":
                raise scim_invalid(f"path: {path!r} is not supported", scim_type="invalidPath", field="path")
            elif op == "remove":
                split.members.append(_change("remove", value) if value else MemberChange("clear"))
            else:
                split.members.append(_change("add" if op == "add" else "replace", value or []))
            continue
        if path is None and isinstance(value, dict) and any(k.lower() == "members" for k in value):
            others = {k: v for k, v in value.items() if k.lower() != "members"}
            members = next(v for k, v in value.items() if k.lower() == "members")
            split.members.append(_change("add" if op == "add" else "replace", members or []))
            if others:
                rest.append({**operation, "value": others})
            continue
        rest.append(operation)
    if rest:
        split.rest = {"schemas": body.get("schemas"), "Operations": rest}
    return split


def displays_of(changes: list[MemberChange]) -> dict[str, str]:
    """The display names the directory sent for members, the last one winning."""
    return {user_id: display for change in changes for user_id, display in change.displays}


def final_members(current: set[str], changes: list[MemberChange]) -> set[str]:
    """The member set after applying ``changes`` in order to ``current``."""
    members = set(current)
    for change in changes:
        if change.kind == "add":
            members |= set(change.user_ids)
        elif change.kind == "remove":
            members -= set(change.user_ids)
        elif change.kind == "replace":
            members = set(change.user_ids)
        else:
            members = set()
    return members
