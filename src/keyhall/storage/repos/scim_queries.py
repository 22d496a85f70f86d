"""SCIM filter predicates (``protocols.scim.filters``) as SQL conditions.

Case-insensitive attributes compare lower-cased: ``userName`` and a group's ``displayName`` through
the lower-cased copies the indexes cover (``users.user_name_key``, ``directory_groups.display_name_key``),
so ``userName eq "x"`` is an index lookup at any directory size; emails are stored lower-cased.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, func, not_, or_, select, true

from keyhall.errors import InvalidInput
from keyhall.protocols.scim.predicates import AllOf, AnyOf, Compare, IsPresent, Negation, Predicate
from keyhall.storage.models import DirectoryGroupRow, DirectoryMembershipRow, UserRow

#: The users table's own columns (not the mapped class's attributes): a query on them alone is plain
#: SQL for SQLAlchemy, without the ORM's per-statement work, which a sync's lookups would pay each time.
USERS = UserRow.__table__.c
USER_COLUMNS: dict[str, Any] = {
    "user_name": USERS.user_name_key, "external_id": USERS.external_id, "id": USERS.id, "email": USERS.email,
    "name": USERS.name, "given_name": USERS.given_name, "family_name": USERS.family_name,
}
PRE_LOWERED = frozenset({"user_name_key", "display_name_key", "email"})
GROUP_COLUMNS: dict[str, Any] = {
    "display_name": DirectoryGroupRow.display_name_key, "external_id": DirectoryGroupRow.external_id,
    "id": DirectoryGroupRow.id,
}


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _compare(column: Any, pred: Compare) -> ColumnElement[bool]:
    value: Any = pred.value
    if pred.case_insensitive:
        value = str(value).lower()
        if column.key not in PRE_LOWERED:
            column = func.lower(column)
    op = pred.op
    if op == "eq":
        return column == value  # type: ignore[no-any-return]
    if op == "ne":
        return or_(column != value, column.is_(None))
    if op in ("co", "sw", "ew"):
        pattern = _escape_like(str(value))
        pattern = {"co": f"%{pattern}%", "sw": f"{pattern}%", "ew": f"%{pattern}"}[op]
        return column.like(pattern, escape="\\")  # type: ignore[no-any-return]
    return {"gt": column > value, "lt": column < value, "ge": column >= value,  # type: ignore[no-any-return]
            "le": column <= value}[op]


def user_condition(pred: Predicate) -> ColumnElement[bool]:
    if isinstance(pred, Compare):
        if pred.field == "active":
            wanted = bool(pred.value) if pred.op == "eq" else not bool(pred.value)
            return USERS.disabled.is_(not wanted)
        return _compare(USER_COLUMNS[pred.field], pred)
    if isinstance(pred, IsPresent):
        if pred.field == "active":
            return true()
        column = USER_COLUMNS[pred.field]
        return and_(column.is_not(None), column != "")
    return _logical(pred, user_condition)


def group_condition(pred: Predicate) -> ColumnElement[bool]:
    if isinstance(pred, Compare):
        if pred.field == "member":
            if pred.op != "eq":
                raise InvalidInput("filter: members compare with eq", field="filter",
                                   details={"scim_type": "invalidFilter"})
            return exists(select(DirectoryMembershipRow.user_id).where(
                DirectoryMembershipRow.group_id == DirectoryGroupRow.id,
                DirectoryMembershipRow.user_id == pred.value))
        return _compare(GROUP_COLUMNS[pred.field], pred)
    if isinstance(pred, IsPresent):
        if pred.field == "member":
            return exists(select(DirectoryMembershipRow.user_id).where(
                DirectoryMembershipRow.group_id == DirectoryGroupRow.id))
        column = GROUP_COLUMNS[pred.field]
        return and_(column.is_not(None), column != "")
    return _logical(pred, group_condition)


def _logical(pred: Predicate, leaf: Any) -> ColumnElement[bool]:
    if isinstance(pred, AllOf):
        return and_(true(), *[leaf(t) for t in pred.terms])
    if isinstance(pred, AnyOf):
        return or_(false(), *[leaf(t) for t in pred.terms])
    if isinstance(pred, Negation):
        negated: ColumnElement[bool] = not_(leaf(pred.term))
        return negated
    raise InvalidInput("filter: unsupported expression", field="filter", details={"scim_type": "invalidFilter"})
