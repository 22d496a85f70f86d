"""The pure trust rules: Keyhall's verdict on an email, and the tenant a multi-tenant preset pins."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from keyhall.core.connections import Connection
from keyhall.core.presets import azure_tenant, check_tenant
from keyhall.core.profiles import email_verdict
from keyhall.core.provisioning import provision
from keyhall.core.users import LoginRefused, Profile, User, new_user
from keyhall.core.vocabulary import Protocol, Provider
from keyhall.login.flow import parse_max_age

TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@pytest.mark.parametrize(("email", "idp_vouched", "verified", "verdict"), [
    ("ann@acme.example", True, ["acme.example"], True),
    ("ann@ACME.example", True, ["acme.example"], True),  # domains compare case-insensitively
    ("ann@acme.example", False, ["acme.example"], False),  # the IdP did not vouch
    ("ann@acme.example", True, [], False),  # the domain is not proven by this organization
    ("ann@sub.acme.example", True, ["acme.example"], False),  # a subdomain is another domain
    ("ann@acme.example.evil", True, ["acme.example"], False),
    ("ann@bücher.example", True, ["xn--bcher-kva.example"], True),  # claims store IDNA names
    ("ann@acme.example.", True, ["acme.example"], True),
    ("ann@not a domain", True, ["acme.example"], False),
    (None, True, ["acme.example"], False),
])
def test_email_verdict_needs_both_proofs(email: str | None, idp_vouched: bool, verified: list[str],
                                         verdict: bool) -> None:
    profile = Profile(subject="s", email=email, email_verified=True)
    assert email_verdict(profile, idp_vouched=idp_vouched, verified_domains=verified) is verdict


@pytest.mark.parametrize(("settings", "tenant"), [
    ({"issuer": f"https://login.microsoftonline.com/{TID}/v2.0"}, TID),
    ({"issuer": f"https://login.microsoftonline.com/{TID.upper()}/v2.0/"}, TID),
    ({"issuer": f"https://sts.windows.net/{TID}/"}, TID),
    ({"issuer": "https://login.microsoftonline.com/common/v2.0"}, None),
    ({"issuer": "https://login.microsoftonline.com/organizations/v2.0"}, None),
    ({"issuer": "https://login.microsoftonline.com/{tenantid}/v2.0"}, None),
    ({"issuer": f"https://evil.example/{TID}/v2.0"}, None),
    ({"issuer": "https://login.microsoftonline.com/common/v2.0", "tenant_id": TID.upper()}, TID),
])
def test_azure_tenant_from_setting_or_single_tenant_issuer(settings: dict[str, str], tenant: str | None) -> None:
    assert azure_tenant(settings) == tenant


def test_check_tenant_refusals() -> None:
    pinned = {"tenant_id": TID}
    check_tenant(Provider.AZURE_AD, Protocol.OIDC, pinned, [], {"tid": TID})
    for claims in ({"tid": "00000000-0000-0000-0000-000000000000"}, {}, {"tid": 1}):
        with pytest.raises(LoginRefused) as refused:
            check_tenant(Provider.AZURE_AD, Protocol.OIDC, pinned, [], claims)
        assert refused.value.reason == "tenant_mismatch"
    with pytest.raises(LoginRefused) as unpinned:
        check_tenant(Provider.AZURE_AD, Protocol.OIDC, {"issuer": "https://login.microsoftonline.com/common/v2.0"},
                     [], {"tid": TID})
    assert unpinned.value.reason == "tenant_not_configured"
    check_tenant(Provider.GOOGLE_WORKSPACE, Protocol.OIDC, {}, ["acme.example"], {"hd": "ACME.example"})
    with pytest.raises(LoginRefused):
        check_tenant(Provider.GOOGLE_WORKSPACE, Protocol.OIDC, {}, ["acme.example"], {"hd": "gmail.com"})
    # SAML federations are pinned by their certificate and entity id, and generic OIDC has no tenants.
    check_tenant(Provider.AZURE_AD, Protocol.SAML, {}, [], {})
    check_tenant(Provider.GENERIC, Protocol.OIDC, {}, [], {})


@pytest.mark.parametrize(("value", "parsed"), [(None, None), ("", None), ("0", 0), ("3600", 3600),
                                               ("999999999999", 10 * 365 * 24 * 3600)])
def test_max_age_parses(value: str | None, parsed: int | None) -> None:
    assert parse_max_age(value) == parsed


@pytest.mark.parametrize("value", ["-1", "1.5", "abc", "١٢", "1" * 13, " 5"])
def test_max_age_rejects_what_is_not_seconds(value: str) -> None:
    with pytest.raises(ValueError, match="max_age"):
        parse_max_age(value)


class Users:
    """An in-memory user store with the repository's interface (core.provisioning.UserRepository)."""

    def __init__(self, *users: User) -> None:
        self.users = {u.id: u for u in users}

    def by_subject(self, connection_id: str, subject: str) -> User | None:
        return next((u for u in self.users.values() if (u.connection_id, u.subject) == (connection_id, subject)), None)

    def precreated(self, connection_id: str, email: str) -> User | None:
        return next((u for u in self.users.values()
                     if u.connection_id == connection_id and u.subject is None and u.email == email), None)

    def add(self, user: User) -> None:
        self.users[user.id] = user

    def save(self, user: User) -> None:
        self.users[user.id] = user

    def directory_user(self, organization_id: str, *, email: str | None, external_id: str) -> User | None:
        return None  # no directory here (tests/unit/test_directory_sign_in.py has them)

    def directory_group_names(self, user_id: str) -> list[str] | None:
        return None


NOW = datetime(2026, 12, 6, tzinfo=UTC)


def connection(**fields: Any) -> Connection:
    return Connection(id="c1", organization_id="o1", protocol=Protocol.OIDC, provider=Provider.GENERIC, name="corp",
                      **fields)


def test_a_stored_verdict_does_not_outlive_the_sign_in_that_gave_it() -> None:
    """Without profile sync the stored email stays, but is vouched for only if this sign-in vouched again."""
    known = new_user("o1", "c1", "sub-1", NOW)
    known.email, known.email_verified = "ann@acme.example", True
    users = Users(known)
    conn = connection(sync_profile=False)
    user, created = provision(users, conn, Profile(subject="sub-1", email="ann@acme.example"), NOW)
    assert (user.id, created, user.email_verified) == (known.id, False, False)
    provision(users, conn, Profile(subject="sub-1", email="ann@acme.example", email_verified=True), NOW)
    assert users.users[known.id].email_verified is True
    provision(users, conn, Profile(subject="sub-1", email="other@acme.example", email_verified=True), NOW)
    assert users.users[known.id].email_verified is False  # the stored address is not the one vouched for
    assert users.users[known.id].email == "ann@acme.example"


def test_require_verified_email_refuses_before_anything_is_stored() -> None:
    users = Users()
    conn = connection(require_verified_email=True)
    with pytest.raises(LoginRefused) as refused:
        provision(users, conn, Profile(subject="s", email="ann@acme.example", email_verified=False), NOW)
    assert refused.value.reason == "email_not_verified"
    assert users.users == {}
    user, created = provision(users, conn, Profile(subject="s", email="ann@acme.example", email_verified=True), NOW)
    assert (created, user.email_verified) == (True, True)
