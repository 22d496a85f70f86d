"""The sign-in's typed records and their stored form: every record reads back what it wrote, the
stored keys stay those of transactions already in flight, and a record of one kind is never read
as another."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keyhall.core.tokens import SamlSubject
from keyhall.core.transactions import new_transaction
from keyhall.login.records import (
    AuthorizeRecord,
    Kind,
    OidcTrip,
    Reauthentication,
    SamlHandoff,
    SamlLogoutTrip,
    SamlTrip,
    new_record_transaction,
)
from keyhall.provider.authorize import AuthorizeRequest

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
REQUEST = AuthorizeRequest(client_id="app_1", redirect_uri="https://app.test/cb", scope="openid", state="s",
                           nonce="n", code_challenge="c" * 43, code_challenge_method="S256", prompt="login",
                           login_hint=None, organization=None, connection=None, domain=None)
RECORDS = [
    AuthorizeRecord(request=REQUEST, csrf="csrf", max_age=60, connections=("conn_1",), password_organizations=None),
    OidcTrip(connection_id="conn_1", nonce="nonce", verifier="v" * 43, redirect_uri="https://kh.test/cb",
             reauth=Reauthentication(force=True, max_age=30)),
    SamlTrip(connection_id="conn_2", request_id="_abc", reauth=Reauthentication()),
    SamlHandoff(connection_id="conn_2", user_id="user_1", amr=("ext", "mfa"), acr="urn:acr", auth_time=NOW),
    SamlHandoff(connection_id="conn_2", user_id="user_1", subject=SamlSubject(
        connection_id="conn_2", name_id="alice@example.com", name_id_format=None, session_index="idx-1")),
    SamlLogoutTrip(connection_id="conn_2", request_id="_req", continue_to="https://app.test/out?state=s",
                   application="App"),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_a_record_reads_back_what_it_stored(record: AuthorizeRecord | OidcTrip | SamlTrip | SamlHandoff
                                            | SamlLogoutTrip) -> None:
    tx = new_record_transaction(record, NOW, parent_id="parent")
    assert tx.kind == record.KIND.value
    assert type(record).of(tx) == record


def test_the_stored_keys_are_those_of_transactions_in_flight() -> None:
    oidc, saml, handoff = (new_record_transaction(r, NOW).data for r in RECORDS[1:4])
    assert oidc == {"connection_id": "conn_1", "nonce": "nonce", "verifier": "v" * 43,
                    "redirect_uri": "https://kh.test/cb", "reauth": {"force": True, "max_age": 30}}
    assert saml == {"connection_id": "conn_2", "request_id": "_abc", "reauth": {"force": False, "max_age": None}}
    assert handoff == {"connection_id": "conn_2", "user_id": "user_1",
                       "authn": {"amr": ["ext", "mfa"], "acr": "urn:acr", "auth_time": NOW.timestamp()}}
    assert set(new_record_transaction(RECORDS[0], NOW).data) == {"request", "csrf", "max_age", "pin"}


def test_a_record_of_one_kind_is_not_read_as_another() -> None:
    saml = new_record_transaction(RECORDS[2], NOW)
    with pytest.raises(ValueError, match="is not a"):
        OidcTrip.of(saml)
    assert OidcTrip.maybe_of(saml) is None
    assert SamlHandoff.maybe_of(saml) is None


def test_unreadable_stored_data_is_refused_not_guessed() -> None:
    broken = new_transaction(Kind.OIDC.value, {"connection_id": "conn_1"}, NOW)
    with pytest.raises(ValueError, match="unreadable"):
        OidcTrip.of(broken)
    assert OidcTrip.maybe_of(broken) is None
    assert OidcTrip.maybe_of(None) is None


def test_reauthentication_comes_from_the_products_request() -> None:
    parent = new_record_transaction(RECORDS[0], NOW)
    assert Reauthentication.of(parent) == Reauthentication(force=True, max_age=60)
    assert Reauthentication.from_dict({"force": 1, "max_age": True}) == Reauthentication(force=True, max_age=None)
