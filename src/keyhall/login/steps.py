"""What the sign-in asks the browser to do next, as typed values the web surface renders.

Each login function answers one of these (or raises ``LoginFailed``, which carries its reason,
status and message for the person). The surface maps each kind to one response: a redirect, the
connection chooser, the email, password or LDAP form, the "too many attempts" page, or a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Redirect:
    """Send the browser to ``url``; ``finished``: the sign-in is over (its browser cookie goes)."""

    url: str
    finished: bool = False


@dataclass(frozen=True)
class Choice:
    label: str
    href: str


@dataclass(frozen=True)
class ChooseConnection:
    """Several connections fit: the person picks one (or the password form, when allowed)."""

    choices: list[Choice]
    password_url: str | None


@dataclass(frozen=True)
class AskEmail:
    tx_id: str
    csrf: str
    email: str | None = None
    message: str | None = None
    status: int = 200


@dataclass(frozen=True)
class PasswordForm:
    tx_id: str
    csrf: str
    email: str | None = None
    message: str | None = None
    status: int = 200


@dataclass(frozen=True)
class LdapForm:
    connection_id: str
    directory: str
    tx_id: str
    csrf: str
    username: str | None = None
    message: str | None = None
    status: int = 200


@dataclass(frozen=True)
class TooManyAttempts:
    """An attempt limit was hit (HTTP 429); ``message`` says when to try again."""

    message: str


@dataclass(frozen=True)
class Refused:
    """A request the sign-in cannot start from (a malformed authorization request whose redirect
    URI cannot be trusted): a plain page, not audited as a failed sign-in."""

    heading: str
    message: str
    status: int = 400


Step = Redirect | ChooseConnection | AskEmail | PasswordForm | LdapForm | TooManyAttempts | Refused
