"""LDAP search filters from a configured template and untrusted input (RFC 4515).

An owner configures templates such as ``(uid=%s)`` or ``(&(objectClass=person)(mail={username}))``;
the person's input replaces the placeholder as an *assertion value*. Every character that has a
meaning in the string form of a filter (RFC 4515 §3: ``*``, ``(``, ``)``, ``\\`` and NUL) is
escaped as ``\\XX``, so input can add neither a wildcard nor a clause: ``*)(uid=*`` searches for
that literal text. The substitution runs in one pass, so input that contains a placeholder is
never substituted again. Input that cannot be a name at all (empty, NUL or other control
characters, unencodable text, longer than ``MAX_USERNAME_LENGTH``) is refused before any filter
is built.
"""

from __future__ import annotations

import re
import unicodedata

from ldap3.utils.conv import escape_filter_chars

from keyhall.errors import InvalidInput

MAX_USERNAME_LENGTH = 256
MAX_DN_LENGTH = 4096
USER_PLACEHOLDERS = ("%s", "{username}")
GROUP_DN_PLACEHOLDERS = ("%s", "{dn}", "{user_dn}")

_USER_PLACEHOLDER = re.compile(r"%s|\{username\}")
_GROUP_PLACEHOLDER = re.compile(r"%s|\{dn\}|\{user_dn\}|\{username\}")


def escape_assertion_value(value: str) -> str:
    """``value`` as an RFC 4515 §3 assertion value: ``*``, ``(``, ``)``, ``\\`` and NUL become ``\\XX``.

    Other characters, non-ASCII included, stay as they are: the filter string is UTF-8 (§3,
    ``UTF1SUBSET`` / ``UTFMB``), and ldap3 encodes the value's octets as they are.
    """
    return escape_filter_chars(value, "utf-8")


def _checked(value: str, *, field: str, limit: int) -> str:
    if not value.strip():
        raise InvalidInput(f"{field}: must not be empty", field=field)
    if len(value) > limit:
        raise InvalidInput(f"{field}: must be at most {limit} characters", field=field)
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise InvalidInput(f"{field}: must not contain control characters", field=field)
    return value


def user_filter(template: str, username: str) -> str:
    """The user search filter: every ``%s`` and ``{username}`` of ``template`` replaced by the
    escaped ``username``. Raises InvalidInput for a template without a placeholder (it would
    find the same entry whatever was typed) or a username that cannot be searched for."""
    if not _USER_PLACEHOLDER.search(template):
        raise InvalidInput("user_search_filter: must contain the placeholder %s or {username}",
                           field="user_search_filter")
    escaped = escape_assertion_value(_checked(username, field="username", limit=MAX_USERNAME_LENGTH))
    return _USER_PLACEHOLDER.sub(lambda _match: escaped, template)


def group_filter(template: str, user_dn: str, *, username: str | None = None) -> str:
    """The group search filter for a member: ``%s``, ``{dn}`` and ``{user_dn}`` become the
    escaped DN of the user's entry (``(member=%s)``); ``{username}`` becomes the escaped login
    name, for groups that list names rather than DNs (``(memberUid={username})``, RFC 2307)."""
    if not _GROUP_PLACEHOLDER.search(template):
        raise InvalidInput("group_search_filter: must contain the placeholder %s, {dn} or {username}",
                           field="group_search_filter")
    dn = escape_assertion_value(_checked(user_dn, field="user_dn", limit=MAX_DN_LENGTH))
    name: str | None = None
    if "{username}" in template:
        if username is None:
            raise InvalidInput("group_search_filter: {username} needs the login name", field="group_search_filter")
        name = escape_assertion_value(_checked(username, field="username", limit=MAX_USERNAME_LENGTH))

    def replace(match: re.Match[str]) -> str:
        return name if match.group(0) == "{username}" and name is not None else dn

    return _GROUP_PLACEHOLDER.sub(replace, template)
