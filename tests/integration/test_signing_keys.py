"""Keyhall's own signing keys: generated on first use, sealed at rest, rotated with overlap."""

from __future__ import annotations

from datetime import timedelta

from keyhall.provider import signing
from keyhall.runtime import Runtime


def test_rotation_keeps_the_old_key_published_until_its_tokens_expire(runtime: Runtime) -> None:
    now = runtime.clock()
    with runtime.database.unit_of_work() as uow:
        old = signing.active_key(uow.signing_keys, "ES256", now)
        uow.commit()
        token = signing.sign(old, {"iss": "x", "exp": int((now + timedelta(minutes=30)).timestamp())})
        new = signing.rotate(uow.signing_keys, "ES256", now)
        uow.commit()
        assert new.kid != old.kid
        assert signing.active_key(uow.signing_keys, "ES256", now).kid == new.kid
        kids = {k["kid"] for k in signing.jwks(uow.signing_keys, now)["keys"]}
        assert {old.kid, new.kid} <= kids
        # A token signed before the rotation still verifies while it lives.
        assert signing.verify(token, uow.signing_keys, now) is not None
        later = now + signing.MAX_TOKEN_LIFETIME + timedelta(minutes=10)
        kids_later = {k["kid"] for k in signing.jwks(uow.signing_keys, later)["keys"]}
        assert old.kid not in kids_later
        assert new.kid in kids_later


def test_private_keys_are_sealed_and_public_jwks_hold_no_private_parts(runtime: Runtime) -> None:
    now = runtime.clock()
    with runtime.database.unit_of_work() as uow:
        key = signing.active_key(uow.signing_keys, "RS256", now)
        uow.commit()
        published = signing.jwks(uow.signing_keys, now)["keys"]
    assert all("d" not in k and "p" not in k for k in published)
    with runtime.database.engine.connect() as conn:
        blobs = [row[0] for row in conn.exec_driver_sql("SELECT sealed_private_key FROM signing_keys")]
    assert blobs
    assert all("PRIVATE KEY" not in blob for blob in blobs)
    assert key.private_pem.startswith("-----BEGIN PRIVATE KEY-----")


def test_tampered_or_foreign_tokens_do_not_verify(runtime: Runtime) -> None:
    now = runtime.clock()
    foreign = signing.generate_key("RS256", now)
    with runtime.database.unit_of_work() as uow:
        key = signing.active_key(uow.signing_keys, "RS256", now)
        uow.commit()
        claims = {"iss": "x", "exp": int((now + timedelta(minutes=5)).timestamp())}
        good = signing.sign(key, claims, typ="at+jwt")
        assert signing.verify(good, uow.signing_keys, now, typ="at+jwt") is not None
        assert signing.verify(good, uow.signing_keys, now, typ="JWT") is None
        head, payload, sig = good.split(".")
        assert signing.verify(f"{head}.{payload}x.{sig}", uow.signing_keys, now) is None
        assert signing.verify(signing.sign(foreign, claims), uow.signing_keys, now) is None
        expired = signing.sign(key, {"iss": "x", "exp": int((now - timedelta(seconds=1)).timestamp())})
        assert signing.verify(expired, uow.signing_keys, now) is None


def test_the_keys_of_both_tokens_come_from_one_read_whether_the_algorithms_differ_or_not(runtime: Runtime) -> None:
    """A token response signs its ID token with the application's algorithm and its access token with
    ES256: two algorithms, or the same one twice (an application that chose ES256)."""
    now = runtime.clock()
    with runtime.database.unit_of_work() as uow:
        rs, es = signing.active_key(uow.signing_keys, "RS256", now), signing.active_key(uow.signing_keys, "ES256", now)
        uow.commit()
        both = signing.active_keys(uow.signing_keys, ("RS256", "ES256"), now)
        same = signing.active_keys(uow.signing_keys, ("ES256", "ES256"), now)
    assert {alg: key.kid for alg, key in both.items()} == {"RS256": rs.kid, "ES256": es.kid}
    assert {alg: key.kid for alg, key in same.items()} == {"ES256": es.kid}
