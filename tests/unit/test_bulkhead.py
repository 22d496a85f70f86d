"""The per-IdP bulkhead: places are counted per origin, refused at once when full, freed on exit."""

from __future__ import annotations

import pytest

from keyhall.errors import IdPBusy, ServiceUnavailable
from keyhall.security.bulkhead import Bulkhead, origin_of
from keyhall.security.outbound import OutboundPolicy


def test_origins_tell_ports_apart_and_default_them() -> None:
    assert origin_of("https://idp.example/token") == "https://idp.example:443"
    assert origin_of("http://127.0.0.1:8080/a?b") == "http://127.0.0.1:8080"
    assert origin_of("http://127.0.0.1:8080/a") != origin_of("http://127.0.0.1:8081/a")


def test_a_full_origin_refuses_at_once_and_frees_its_places() -> None:
    bulkhead = Bulkhead(2)
    with bulkhead.slot("https://a.example/x"), bulkhead.slot("https://a.example/y"):
        with pytest.raises(IdPBusy) as refused, bulkhead.slot("https://a.example/z", field="oidc.token_endpoint"):
            pass  # pragma: no cover - never entered
        assert isinstance(refused.value, ServiceUnavailable)
        assert refused.value.code == "idp_busy"
        assert refused.value.details == {"origin": "https://a.example:443", "limit": 2, "field": "oidc.token_endpoint"}
        with bulkhead.slot("https://b.example/x"):  # another IdP is not affected
            assert bulkhead.in_flight("https://b.example:443") == 1
        assert bulkhead.in_flight("https://a.example:443") == 2
    assert bulkhead.in_flight("https://a.example:443") == 0
    with pytest.raises(RuntimeError), bulkhead.slot("https://a.example/x"):
        raise RuntimeError("a failed call gives its place back too")
    assert bulkhead.in_flight("https://a.example:443") == 0


def test_each_policy_has_one_bulkhead_sized_by_its_setting() -> None:
    policy = OutboundPolicy(max_concurrent_calls=3)
    assert policy.calls.limit == 3
    assert policy.calls is policy.calls
    with pytest.raises(ValueError, match="at least one"):
        Bulkhead(0)
