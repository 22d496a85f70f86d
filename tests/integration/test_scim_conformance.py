"""RFC 7643/7644 conformance: the ``scim2-tester`` checker drives a real Keyhall server over HTTP
(through ``scim2-client``) and every check passes, or is skipped only for a feature the
directory's ServiceProviderConfig says is off (bulk, sort, password change)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from tests.support.api import auth
from tests.support.live import LiveKeyhall

#: the features ServiceProviderConfig declares unsupported, by the words checks name them with
OFF_FEATURES = ("bulk", "sort", "password")
PASSING = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}


@pytest.fixture(scope="module")
def scim_client(live_keyhall: LiveKeyhall) -> Iterator[tuple[SyncSCIMClient, dict[str, Any]]]:
    with live_keyhall.api() as api:
        org = api.post("/v1/organizations", json={"name": "Conformance"},
                       headers=auth(live_keyhall.instance_token)).json()
        made = api.post(f"/v1/organizations/{org['id']}/directories", json={"name": "Checker"},
                        headers=auth(live_keyhall.instance_token))
        assert made.status_code == 201, made.text
    directory = made.json()
    spc = httpx.get(f"{directory['scim_base_url']}/ServiceProviderConfig",
                    headers={"Authorization": f"Bearer {directory['token']}"}, timeout=10, trust_env=False).json()
    with httpx2.Client(base_url=directory["scim_base_url"] + "/", timeout=15.0, trust_env=False,
                       headers={"Authorization": f"Bearer {directory['token']}"}) as http:
        client = SyncSCIMClient(http)
        client.discover()
        yield client, spc


def _is_off_feature(result: Any, spc: dict[str, Any]) -> bool:
    text = f"{result.title} {result.reason}".lower()
    return any(word in text and not spc.get({"password": "changePassword"}.get(word, word), {}).get("supported")
               for word in OFF_FEATURES)


def test_every_scim2_tester_check_passes(scim_client: tuple[SyncSCIMClient, dict[str, Any]]) -> None:
    client, spc = scim_client
    results = check_server(client)
    assert len(results) > 20
    failures = [f"{r.title} [{r.status.name}]: {r.reason}" for r in results
                if r.status not in PASSING and not (r.status is Status.SKIPPED and _is_off_feature(r, spc))]
    assert failures == [], "\n".join(failures)
    skipped = [r for r in results if r.status is Status.SKIPPED]
    assert all(_is_off_feature(r, spc) for r in skipped)
