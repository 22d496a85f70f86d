"""Secret encryption (keyhall.security.secrets), API key tokens (keyhall.security.api_keys) and the
audit helpers that keep secrets out of the trail (keyhall.core.audit)."""

from __future__ import annotations

import hmac
import re
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from keyhall.core import audit
from keyhall.core.vocabulary import SECRET_MASK
from keyhall.security.api_keys import TOKEN_PREFIX, hash_secret, issue_key, secret_matches, split_token
from keyhall.security.secrets import (
    SecretBox,
    SecretKeyError,
    load_or_create_key_file,
    new_key,
    parse_key_list,
    write_key_file,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SECRETS = {"client_secret": "s3cr3t-value", "bind_password": "p@ss word ✓"}


@pytest.fixture(scope="module")
def key_a() -> str:
    return new_key()


@pytest.fixture(scope="module")
def key_b() -> str:
    return new_key()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- SecretBox -------------------------------------------------------------------------------


def test_seal_and_open_round_trip(key_a: str) -> None:
    box = SecretBox([key_a])
    blob = box.seal(SECRETS)
    assert blob is not None
    for value in SECRETS.values():
        assert value not in blob
    assert box.open(blob) == SECRETS


def test_sealing_twice_gives_different_blobs(key_a: str) -> None:
    box = SecretBox([key_a])
    first, second = box.seal(SECRETS), box.seal(SECRETS)
    assert first != second  # fresh IV and timestamp each time
    assert box.open(first) == box.open(second) == SECRETS


def test_nothing_to_seal_is_none_and_none_opens_empty(key_a: str) -> None:
    box = SecretBox([key_a])
    assert box.seal({}) is None
    assert box.seal({"client_secret": ""}) is None
    assert box.open(None) == {}
    assert box.open("") == {}
    assert box.open(box.seal({"client_secret": "x", "bind_password": ""})) == {"client_secret": "x"}


def test_blob_sealed_under_an_older_key_opens_with_the_newer_key_list(key_a: str, key_b: str) -> None:
    blob = SecretBox([key_a]).seal(SECRETS)
    assert SecretBox([key_b, key_a]).open(blob) == SECRETS


def test_blob_does_not_open_without_its_key(key_a: str, key_b: str) -> None:
    blob = SecretBox([key_a]).seal(SECRETS)
    with pytest.raises(SecretKeyError) as caught:
        SecretBox([key_b]).open(blob)
    assert "KEYHALL_SECRET_KEYS" in caught.value.message
    assert caught.value.code == "secret_keys_invalid"


def test_tampered_blob_is_refused(key_a: str) -> None:
    box = SecretBox([key_a])
    blob = box.seal(SECRETS)
    assert blob is not None
    tampered = blob[:-6] + ("AAAAAA" if not blob.endswith("AAAAAA") else "BBBBBB")
    with pytest.raises(SecretKeyError):
        box.open(tampered)


def test_reseal_moves_the_blob_to_the_newest_key(key_a: str, key_b: str) -> None:
    old = SecretBox([key_a]).seal(SECRETS)
    assert old is not None
    resealed = SecretBox([key_b, key_a]).reseal(old)

    assert resealed != old
    assert SecretBox([key_b]).open(resealed) == SECRETS
    with pytest.raises(SecretKeyError):
        SecretBox([key_a]).open(resealed)


def test_reseal_of_a_blob_no_key_opens_is_refused(key_a: str, key_b: str) -> None:
    blob = SecretBox([key_a]).seal(SECRETS)
    assert blob is not None
    with pytest.raises(SecretKeyError):
        SecretBox([key_b]).reseal(blob)


def test_new_box_seals_with_its_first_key(key_a: str, key_b: str) -> None:
    blob = SecretBox([key_b, key_a]).seal(SECRETS)
    assert SecretBox([key_b]).open(blob) == SECRETS
    with pytest.raises(SecretKeyError):
        SecretBox([key_a]).open(blob)


# --- key lists and the key file --------------------------------------------------------------


def test_key_list_is_comma_or_newline_separated_newest_first(key_a: str, key_b: str) -> None:
    assert parse_key_list(f"{key_b},{key_a}") == [key_b, key_a]
    assert parse_key_list(f" {key_b} ,\n{key_a}\n") == [key_b, key_a]
    assert parse_key_list(f"{key_b}\n{key_a}\n") == [key_b, key_a]


@pytest.mark.parametrize("text", ["", " , \n", "not-a-key", "c2hvcnQ=", "A" * 44 + "!"])
def test_bad_key_text_is_refused(text: str) -> None:
    with pytest.raises(SecretKeyError):
        parse_key_list(text)


def test_the_bad_key_is_named_by_position(key_a: str) -> None:
    with pytest.raises(SecretKeyError) as caught:
        parse_key_list(f"{key_a},definitely-not-a-key")
    assert "#2" in caught.value.message
    assert "definitely-not-a-key" not in caught.value.message


def test_new_keys_are_distinct_fernet_keys() -> None:
    first, second = new_key(), new_key()
    assert first != second
    assert parse_key_list(first) == [first]


def test_key_file_is_created_private_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret_keys"
    keys = load_or_create_key_file(path)

    assert len(keys) == 1
    assert path.exists()
    assert mode_of(path) == 0o600
    assert path.read_text().split() == keys

    again = load_or_create_key_file(path)
    assert again == keys
    blob = SecretBox(keys).seal(SECRETS)
    assert SecretBox(again).open(blob) == SECRETS


def test_key_file_with_bad_content_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret_keys"
    path.write_text("garbage\n")
    with pytest.raises(SecretKeyError):
        load_or_create_key_file(path)


def test_written_key_file_is_private_and_read_back_in_order(tmp_path: Path, key_a: str, key_b: str) -> None:
    path = tmp_path / "secret_keys"
    load_or_create_key_file(path)
    write_key_file(path, [key_b, key_a])
    assert mode_of(path) == 0o600
    assert load_or_create_key_file(path) == [key_b, key_a]
    assert not path.with_suffix(".tmp").exists()


# --- API key tokens --------------------------------------------------------------------------


def test_issued_token_format() -> None:
    issued = issue_key()
    assert re.fullmatch(r"[0-9a-f]{16}", issued.key_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", issued.secret)  # 256 random bits, urlsafe base64
    assert issued.token == f"{TOKEN_PREFIX}{issued.key_id}.{issued.secret}"
    assert issued.token.startswith("kh_")
    assert issued.secret_hash == hash_secret(issued.secret)
    assert re.fullmatch(r"[0-9a-f]{64}", issued.secret_hash)
    assert issued.secret not in issued.secret_hash


def test_issued_keys_are_unique() -> None:
    keys = [issue_key() for _ in range(20)]
    assert len({k.key_id for k in keys}) == 20
    assert len({k.secret for k in keys}) == 20


def test_split_token_round_trips_an_issued_token() -> None:
    issued = issue_key()
    assert split_token(issued.token) == (issued.key_id, issued.secret)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "kh_",
        "kh_abc",
        "kh_abc.",
        "kh_.secret",
        "kh_.",
        "xx_abc.secret",
        "abc.secret",
        "Bearer kh_abc.secret",
        "KH_abc.secret",
        "kh_abc." + "s" * 200,
    ],
)
def test_split_token_rejects_malformed_tokens(token: str) -> None:
    assert split_token(token) is None


def test_secret_matches_only_the_right_secret() -> None:
    issued = issue_key()
    assert secret_matches(issued.secret, issued.secret_hash) is True
    assert secret_matches(issued.secret + "x", issued.secret_hash) is False
    assert secret_matches("", issued.secret_hash) is False
    assert secret_matches(issue_key().secret, issued.secret_hash) is False


def test_secret_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module api_keys calls
    issued = issue_key()
    assert secret_matches(issued.secret, issued.secret_hash) is True
    assert secret_matches("wrong", issued.secret_hash) is False
    assert calls == [(issued.secret_hash, issued.secret_hash), (hash_secret("wrong"), issued.secret_hash)]


# --- audit: masking and diffs ----------------------------------------------------------------


def test_mask_secrets_masks_nested_secret_named_keys() -> None:
    value: dict[str, Any] = {
        "name": "corp",
        "oidc": {"client_id": "abc", "client_secret": "s3cr3t", "nested": {"password": "pw", "token": "tk"}},
        "ldap": [{"bind_password": "bp", "server": "ldap.example.com"}],
        "saml": {"sp_private_key": "-----BEGIN PRIVATE KEY-----"},
        "secret": "top-level",
    }
    masked = audit.mask_secrets(value)
    assert masked == {
        "name": "corp",
        "oidc": {"client_id": "abc", "client_secret": SECRET_MASK,
                 "nested": {"password": SECRET_MASK, "token": SECRET_MASK}},
        "ldap": [{"bind_password": SECRET_MASK, "server": "ldap.example.com"}],
        "saml": {"sp_private_key": SECRET_MASK},
        "secret": SECRET_MASK,
    }
    assert value["oidc"]["client_secret"] == "s3cr3t"  # a copy; the input is untouched


def test_mask_secrets_leaves_unset_secrets_visible_as_unset() -> None:
    masked = audit.mask_secrets({"client_secret": None, "bind_password": "", "client_secret_set": True})
    assert masked == {"client_secret": None, "bind_password": "", "client_secret_set": True}


def test_diff_gives_dotted_paths_for_nested_dicts() -> None:
    before = {"name": "a", "oidc": {"issuer": "https://one.example.com", "scope": "openid",
                                    "deep": {"x": 1, "y": 2}}, "domains": ["a.example.com"]}
    after = {"name": "a", "oidc": {"issuer": "https://two.example.com", "scope": "openid",
                                   "deep": {"x": 1, "y": 3}, "added": True}, "domains": ["b.example.com"]}
    assert audit.diff(before, after) == {
        "oidc.issuer": {"from": "https://one.example.com", "to": "https://two.example.com"},
        "oidc.deep.y": {"from": 2, "to": 3},
        "oidc.added": {"from": None, "to": True},
        "domains": {"from": ["a.example.com"], "to": ["b.example.com"]},
    }


def test_diff_of_equal_values_is_empty_and_creation_lists_every_field() -> None:
    assert audit.diff({"a": {"b": 1}}, {"a": {"b": 1}}) == {}
    assert audit.diff({}, {"name": "x", "status": "active"}) == {
        "name": {"from": None, "to": "x"},
        "status": {"from": None, "to": "active"},
    }
    assert audit.diff({"a": {"b": 1}}, {"a": None}) == {"a": {"from": {"b": 1}, "to": None}}


def test_audit_event_masks_secrets_in_its_changes() -> None:
    event = audit.event(
        organization_id="org", actor="key:abc", action="connection.updated", target_type="connection",
        target_id="c1", request_id="req-1", now=NOW,
        changes={"ldap": {"from": {"bind_password": "old-pw"}, "to": {"bind_password": "new-pw"}}},
    )
    assert "old-pw" not in repr(event.changes)
    assert "new-pw" not in repr(event.changes)
    assert event.request_id == "req-1"
    assert event.created_at == NOW


def test_audit_event_masks_secrets_in_a_diff_of_protocol_settings() -> None:
    """``event(changes=diff(...))`` is how the services record a change: the dotted path that
    ``diff`` produces for a nested secret must be masked as well."""
    before = {"oidc": {"client_id": "abc", "client_secret": "old-client-secret"}}
    after = {"oidc": {"client_id": "abc", "client_secret": "new-client-secret"}}
    event = audit.event(
        organization_id="org", actor="key:abc", action="connection.updated", target_type="connection",
        target_id="c1", request_id=None, now=NOW, changes=audit.diff(before, after),
    )
    assert "oidc.client_secret" in event.changes
    assert "old-client-secret" not in repr(event.changes)
    assert "new-client-secret" not in repr(event.changes)
