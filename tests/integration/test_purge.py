"""The purge of expired rows (``keyhall.storage.purge``): what is past its use goes, what can still
serve stays — on SQLite and on PostgreSQL (``KEYHALL_TEST_DATABASE_URL``); run by ``keyhall purge``
(counts as JSON) and by the background job of ``keyhall serve``."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session

from keyhall.runtime import Runtime
from keyhall.security.secrets import new_key
from keyhall.storage import migrate
from keyhall.storage.engine import build_engine
from keyhall.storage.models import (
    AuditEventRow,
    AuthorizationCodeRow,
    EventRow,
    LoginTransactionRow,
    OrganizationRow,
    PortalLinkRow,
    PortalSessionRow,
    RateCounterRow,
    RefreshTokenRow,
    RevokedAccessTokenRow,
    SamlReplayRow,
    SignInTraceRow,
    TokenFamilyRow,
    WebhookDeliveryRow,
    WebhookEndpointRow,
)
from keyhall.storage.purge import KINDS, purge_expired
from tests.support.database import fresh_database
from tests.support.peers import free_port
from tests.support.servers import KeyhallServer, keyhall_cli, keyhall_env, wait_until
from tests.support.settings import make_settings

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
AGO = NOW - timedelta(seconds=1)
LATER = NOW + timedelta(days=1)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with fresh_database(tmp_path) as url:
        eng = build_engine(url)
        migrate.upgrade(eng)
        try:
            yield eng
        finally:
            eng.dispose()


def transaction(tx_id: str, expires_at: datetime) -> LoginTransactionRow:
    return LoginTransactionRow(id=tx_id, kind="authorize", parent_id=None, data={"request": {}},
                               created_at=expires_at - timedelta(minutes=10), expires_at=expires_at, consumed_at=None)


def code(code_hash: str, expires_at: datetime, *, used: bool = False,
         family: str | None = None) -> AuthorizationCodeRow:
    grant: dict[str, Any] = {"scope": "openid"}
    if family:
        grant["family_id"] = family
    return AuthorizationCodeRow(code_hash=code_hash, client_id="app", user_id="u", grant=grant,
                                created_at=expires_at - timedelta(seconds=60), expires_at=expires_at,
                                used_at=expires_at - timedelta(seconds=30) if used else None)


def token(token_hash: str, family: str, expires_at: datetime, *, used: bool = False,
          revoked: bool = False) -> RefreshTokenRow:
    return RefreshTokenRow(token_hash=token_hash, family_id=family, client_id="app", user_id="u", grant={},
                           created_at=NOW - timedelta(days=40), expires_at=expires_at,
                           used_at=NOW - timedelta(days=2) if used else None,
                           revoked_at=NOW - timedelta(days=1) if revoked else None)


def family(family_id: str) -> TokenFamilyRow:
    return TokenFamilyRow(id=family_id, client_id="app", user_id="u", connection_id=None, amr=["pwd"],
                          created_at=NOW - timedelta(days=40), revoked_at=None)


def audit(event_id: str, created_at: datetime) -> AuditEventRow:
    return AuditEventRow(id=event_id, organization_id=None, actor="system", action="sign_in.failed",
                         target_type="user", target_id=None, request_id=None, changes={}, created_at=created_at)


def seed(engine: Engine) -> None:
    with Session(engine) as session:
        session.add_all([
            transaction("tx-expired", AGO), transaction("tx-live", LATER),
            # Refresh-token families: L is alive (its spent tokens are kept for reuse detection),
            # D died of old age, R was revoked, S's last token was spent without a successor.
            token("L-spent-expired", "L", AGO, used=True), token("L-spent", "L", LATER, used=True),
            token("L-live", "L", LATER),
            token("D-spent", "D", AGO, used=True), token("D-last", "D", AGO),
            token("R-revoked", "R", LATER, revoked=True), token("R-spent", "R", LATER, used=True, revoked=True),
            token("S-spent", "S", LATER, used=True),
            *(family(name) for name in ("L", "D", "R", "S", "orphan")),
            RevokedAccessTokenRow(jti="at-expired", family_id="L", expires_at=AGO),
            RevokedAccessTokenRow(jti="at-live", family_id="L", expires_at=LATER),
            code("code-unused-expired", AGO), code("code-unused-live", LATER),
            code("code-spent-live-family", AGO, used=True, family="L"),
            code("code-spent-dead-family", AGO, used=True, family="D"),
            code("code-spent-no-family", AGO, used=True),
            SamlReplayRow(connection_id="c", assertion_id="a-expired", expires_at=AGO),
            SamlReplayRow(connection_id="c", assertion_id="a-live", expires_at=LATER),
            audit("audit-old", NOW - timedelta(days=400)), audit("audit-recent", NOW - timedelta(days=10)),
        ])
        session.commit()
        stamp = int(NOW.timestamp())
        session.execute(insert(RateCounterRow), [
            {"key": "api:ip:x", "window_start": stamp - 120, "count": 3, "expires_at": stamp - 60},
            {"key": "api:ip:x", "window_start": stamp, "count": 1, "expires_at": stamp + 60},
        ])
        session.commit()


def remaining(engine: Engine, column: Any) -> set[str]:
    with engine.connect() as conn:
        return {str(value) for value in conn.execute(select(column)).scalars()}


def test_past_expiry_goes_and_what_can_still_serve_stays(engine: Engine) -> None:
    seed(engine)
    counts = purge_expired(engine, NOW, audit_retention_days=365)
    assert remaining(engine, LoginTransactionRow.id) == {"tx-live"}
    assert remaining(engine, RefreshTokenRow.token_hash) == {"L-spent-expired", "L-spent", "L-live", "S-spent"}
    assert remaining(engine, AuthorizationCodeRow.code_hash) == {"code-unused-live", "code-spent-live-family"}
    assert remaining(engine, TokenFamilyRow.id) == {"L", "S"}
    assert remaining(engine, RevokedAccessTokenRow.jti) == {"at-live"}
    assert remaining(engine, SamlReplayRow.assertion_id) == {"a-live"}
    assert remaining(engine, RateCounterRow.expires_at) == {str(int(NOW.timestamp()) + 60)}
    assert remaining(engine, AuditEventRow.id) == {"audit-recent"}
    assert counts == {"sign_in_transactions": 1, "authorization_codes": 3, "refresh_tokens": 4, "token_families": 3,
                      "revoked_access_tokens": 1, "saml_replays": 1, "rate_counters": 1, "logout_notices": 0,
                      "portal_sessions": 0, "portal_links": 0, "audit_events": 1, "events": 0,
                      "sign_in_traces": 0}
    # A second pass finds nothing more.
    assert set(purge_expired(engine, NOW, audit_retention_days=365).values()) == {0}


def test_once_the_last_live_token_expires_the_whole_family_goes(engine: Engine) -> None:
    seed(engine)
    purge_expired(engine, NOW)
    purge_expired(engine, LATER + timedelta(seconds=1))
    assert remaining(engine, RefreshTokenRow.token_hash) == set()
    assert remaining(engine, AuthorizationCodeRow.code_hash) == set()


def test_audit_events_are_kept_forever_with_retention_zero(engine: Engine) -> None:
    seed(engine)
    counts = purge_expired(engine, NOW, audit_retention_days=0)
    assert counts["audit_events"] == 0
    assert remaining(engine, AuditEventRow.id) == {"audit-old", "audit-recent"}


def test_events_past_retention_go_with_their_deliveries(engine: Engine) -> None:
    def event(event_id: str, when: datetime) -> EventRow:
        return EventRow(id=event_id, type="user.created", organization_id=None, data={}, created_at=when)

    def delivery(event_id: str) -> WebhookDeliveryRow:
        return WebhookDeliveryRow(id=f"d-{event_id}", endpoint_id="hook", event_id=event_id, event_type="user.created",
                                  status="succeeded", attempts=1, next_attempt_at=NOW, retry_from=NOW, created_at=NOW)

    with Session(engine) as session:
        session.add_all([event("ev-old", NOW - timedelta(days=31)), event("ev-recent", NOW - timedelta(days=29)),
                         WebhookEndpointRow(id="hook", url="https://hooks.example/", description=None,
                                            event_types=[], enabled=True, sealed_secrets="x", created_at=NOW,
                                            updated_at=NOW)])
        session.flush()
        session.add_all([delivery("ev-old"), delivery("ev-recent")])
        session.commit()
    assert purge_expired(engine, NOW, event_retention_days=0)["events"] == 0  # 0 keeps them all
    counts = purge_expired(engine, NOW, event_retention_days=30)
    assert counts["events"] == 1
    assert remaining(engine, EventRow.id) == {"ev-recent"}
    assert remaining(engine, WebhookDeliveryRow.id) == {"d-ev-recent"}


def test_sign_in_traces_past_retention_go(engine: Engine) -> None:
    def trace(trace_id: str, when: datetime) -> SignInTraceRow:
        return SignInTraceRow(id=trace_id, organization_id="org", connection_id="conn", protocol="saml", kind="test",
                              outcome="passed", steps=[], attributes=[], profile={}, failure=None, created_at=when)

    with Session(engine) as session:
        session.add_all([trace("trace-old", NOW - timedelta(days=8)), trace("trace-recent", NOW - timedelta(days=6))])
        session.commit()
    assert purge_expired(engine, NOW, trace_retention_days=0)["sign_in_traces"] == 0  # 0 keeps them all
    assert purge_expired(engine, NOW, trace_retention_days=7)["sign_in_traces"] == 1
    assert remaining(engine, SignInTraceRow.id) == {"trace-recent"}


def test_large_backlogs_go_in_bounded_batches(engine: Engine) -> None:
    with Session(engine) as session:
        session.execute(insert(LoginTransactionRow), [
            {"id": f"bulk-{i}", "kind": "authorize", "parent_id": None, "data": {}, "created_at": AGO,
             "expires_at": AGO, "consumed_at": None} for i in range(1100)])
        session.add(transaction("tx-live", LATER))
        session.commit()
    batches: list[int] = []

    def stop() -> bool:  # asked before each batch
        batches.append(1)
        return False

    counts = purge_expired(engine, NOW, batch_size=500, stop=stop)
    assert counts["sign_in_transactions"] == 1100
    assert remaining(engine, LoginTransactionRow.id) == {"tx-live"}
    assert len(batches) >= 3  # 500 + 500 + 100, each its own transaction


def test_a_stop_request_ends_the_purge_between_batches(engine: Engine) -> None:
    seed(engine)
    counts = purge_expired(engine, NOW, stop=lambda: True)
    assert set(counts.values()) == {0}
    assert "tx-expired" in remaining(engine, LoginTransactionRow.id)


# --- the command and the background job --------------------------------------------------------


def test_keyhall_purge_prints_the_counts(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as url:
        eng = build_engine(url)
        migrate.upgrade(eng)
        real_now = datetime.now(UTC)
        with Session(eng) as session:
            session.add_all([transaction("cli-expired", real_now - timedelta(minutes=1)),
                             transaction("cli-live", real_now + timedelta(hours=1)),
                             audit("cli-audit-old", real_now - timedelta(days=40))])
            session.commit()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYHALL_")}
        env.update(KEYHALL_DATA_DIR=str(tmp_path / "data"), KEYHALL_DATABASE_URL=url, KEYHALL_SECRET_KEYS=new_key(),
                   KEYHALL_AUDIT_RETENTION_DAYS="30")
        counts = keyhall_cli(env, tmp_path, "purge")  # in process; `keyhall serve` below is a real one
        assert list(counts) == list(KINDS)
        assert counts["sign_in_transactions"] == 1
        assert counts["audit_events"] == 1
        assert all(isinstance(v, int) for v in counts.values())
        assert remaining(eng, LoginTransactionRow.id) == {"cli-live"}
        eng.dispose()


def test_keyhall_serve_purges_in_the_background(tmp_path: Path) -> None:
    port = free_port()
    db_file = tmp_path / "serve.db"
    env = keyhall_env(tmp_path / "data", f"sqlite:///{db_file}", f"http://127.0.0.1:{port}", new_key(),
                      KEYHALL_PURGE_INTERVAL_SECONDS="0.2")
    server = KeyhallServer("purging", port, env, tmp_path).start()
    try:
        eng = build_engine(f"sqlite:///{db_file}")
        with Session(eng) as session:
            expired = datetime.now(UTC) - timedelta(seconds=5)
            session.add_all([transaction(f"bg-expired-{uuid.uuid4().hex[:6]}", expired),
                             transaction("bg-live", datetime.now(UTC) + timedelta(hours=1))])
            session.commit()
        assert wait_until(lambda: remaining(eng, LoginTransactionRow.id) == {"bg-live"}, timeout=15)
        eng.dispose()
    finally:
        server.stop()


def test_the_purger_job_runs_and_stops(tmp_path: Path) -> None:
    from keyhall.jobs import Purger

    with fresh_database(tmp_path) as url:
        runtime = Runtime.build(make_settings(tmp_path, url))
        runtime.database.migrate()
        with Session(runtime.database.engine) as session:
            session.add(transaction("job-expired", datetime.now(UTC) - timedelta(seconds=5)))
            session.commit()
        off = Purger(runtime, interval=0)
        off.start()
        assert not off.running
        job = Purger(runtime, interval=0.05)
        job.start()
        try:
            assert wait_until(lambda: job.passes >= 2, timeout=10)
            assert remaining(runtime.database.engine, LoginTransactionRow.id) == set()
        finally:
            started = time.monotonic()
            job.stop()
            assert time.monotonic() - started < 5
            assert not job.running
        with runtime.database.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(LoginTransactionRow)).scalar_one() == 0
        runtime.database.dispose()


def test_ended_portal_sessions_and_spent_portal_links_go(engine: Engine) -> None:
    def link(link_id: str, expires_at: datetime) -> PortalLinkRow:
        return PortalLinkRow(id=link_id, organization_id="org-p", intent="sso", token_hash=link_id * 4,
                             return_url=None, created_by="key:k", created_at=expires_at - timedelta(minutes=15),
                             expires_at=expires_at, used_at=None)

    def portal_session(session_id: str, link_id: str, expires_at: datetime) -> PortalSessionRow:
        return PortalSessionRow(id=session_id, link_id=link_id, organization_id="org-p", intent="sso",
                                secret_hash=session_id * 4, csrf_token="t", return_url=None, draft_connection_id="d",
                                created_at=expires_at - timedelta(hours=1), expires_at=expires_at)

    with Session(engine) as session:
        session.add(OrganizationRow(id="org-p", slug="org-p", name="P", short_id="orgp", created_at=AGO,
                                    updated_at=AGO))
        session.flush()
        session.add_all([link("link-expired", AGO), link("link-fresh", LATER), link("link-opened", AGO)])
        session.flush()
        session.add_all([portal_session("sess-live", "link-opened", LATER)])
        session.add_all([link("link-ended", AGO)])
        session.flush()
        session.add_all([portal_session("sess-ended", "link-ended", AGO)])
        session.commit()
    counts = purge_expired(engine, NOW)
    assert remaining(engine, PortalSessionRow.id) == {"sess-live"}
    assert remaining(engine, PortalLinkRow.id) == {"link-fresh", "link-opened"}  # a live session keeps its link
    assert (counts["portal_sessions"], counts["portal_links"]) == (1, 2)
