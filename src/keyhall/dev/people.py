"""The sample people of the development-mode test IdP, the same for its OIDC and SAML sides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Person:
    sub: str
    email: str
    given_name: str
    family_name: str

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    def claims(self) -> dict[str, Any]:
        return {"sub": self.sub, "email": self.email, "email_verified": True, "name": self.name,
                "given_name": self.given_name, "family_name": self.family_name}


PEOPLE = (
    Person("dev-alice", "alice@example.com", "Alice", "Archer"),
    Person("dev-bob", "bob@example.com", "Bob", "Baker"),
    Person("dev-carol", "carol@example.com", "Carol", "Carter"),
)
BY_SUB = {p.sub: p for p in PEOPLE}
