"""The access log: one JSON line per request on ``keyhall.access`` with the route template, status,
duration, request id and client address — never the raw path or the query string, where codes,
states and tokens travel."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from keyhall.api.access_log import client_of
from keyhall.logs import JsonFormatter
from keyhall.security.forwarded import parse_trusted_proxies
from tests.support.api import Keyhall, auth

CODE = "authzcode-0a1b2c3d4e5f"
TOKEN = "kh_pathtoken0123.secretpart-9f8e7d"
BEARER = "kh_headertoken77.headersecret-5a5a"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    lines: list[dict[str, Any]] = []
    for record in caplog.records:
        if record.name == "keyhall.access":
            text = formatter.format(record)
            for secret in (CODE, TOKEN, BEARER, "code=", "?"):
                assert secret not in text, text
            lines.append(json.loads(text))
    return lines


def test_one_line_per_request_with_the_template_not_the_values(keyhall: Keyhall,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="keyhall.access")
    keyhall.client.get(f"/oauth2/authorize?code={CODE}&state={TOKEN}&client_id=nope",
                       headers={"X-Request-ID": "req-authorize-1"})
    keyhall.client.get(f"/v1/organizations/{TOKEN}", headers={**auth(BEARER), "X-Request-ID": "req-org-2"})
    keyhall.client.get(f"/no/such/path/{TOKEN}?code={CODE}")

    authorize, org, unmatched = access_lines(caplog)
    assert authorize["message"] == "request"
    assert authorize["method"] == "GET"
    assert authorize["route"] == "/oauth2/authorize"
    assert authorize["request_id"] == "req-authorize-1"
    assert isinstance(authorize["status"], int)
    assert authorize["duration_ms"] >= 0
    assert authorize["client"] == "testclient"
    assert org["route"] == "/v1/organizations/{org}"
    assert org["status"] == 401
    assert org["request_id"] == "req-org-2"
    assert unmatched["route"] == "unmatched"
    assert unmatched["status"] == 404
    assert unmatched["request_id"]  # generated when the caller sends none


def test_nothing_is_written_with_the_access_logger_above_info(keyhall: Keyhall,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="keyhall.access")
    keyhall.client.get("/healthz")
    assert not [r for r in caplog.records if r.name == "keyhall.access"]


#: Stands in for the Starlette app in a scope: only its runtime's trusted proxies are read.
APP = SimpleNamespace(state=SimpleNamespace(runtime=SimpleNamespace(settings=SimpleNamespace(
    trusted_proxies=parse_trusted_proxies("10.0.0.0/8")))))


@pytest.mark.parametrize(("peer", "forwarded_for", "expected"), [
    ("10.0.0.5", [b"203.0.113.9"], "203.0.113.9"),  # a trusted proxy names the client
    ("198.51.100.7", [b"203.0.113.9"], "198.51.100.7"),  # anyone else's header is ignored
    ("10.0.0.5", [], "10.0.0.5"),
])
def test_the_client_is_the_address_the_rate_limits_count(peer: str, forwarded_for: list[bytes],
                                                          expected: str) -> None:
    scope = {"app": APP, "client": (peer, 1234),
             "headers": [(b"x-forwarded-for", value) for value in forwarded_for]}
    assert client_of(scope) == expected
