"""The predicates a SCIM filter comes to (``keyhall.protocols.scim.filters`` parses them): what a
directory store runs as a query (``keyhall.storage.repos.scim_queries``).

Kept apart from the parser so that the ports and the store can name them without loading
``scim2-models`` and its grammar (some 7 MB per worker): those load with the first SCIM request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Op = Literal["eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le"]

#: the fields compared case-insensitively
CASE_INSENSITIVE = frozenset({"user_name", "email", "display_name", "name", "given_name", "family_name"})


@dataclass(frozen=True)
class Compare:
    field: str
    op: Op
    value: Any

    @property
    def case_insensitive(self) -> bool:
        return self.field in CASE_INSENSITIVE


@dataclass(frozen=True)
class IsPresent:
    field: str


@dataclass(frozen=True)
class AllOf:
    terms: tuple[Predicate, ...]


@dataclass(frozen=True)
class AnyOf:
    terms: tuple[Predicate, ...]


@dataclass(frozen=True)
class Negation:
    term: Predicate


Predicate = Compare | IsPresent | AllOf | AnyOf | Negation
