"""The suite's promise about real peers: in CI a missing peer fails the run, it is never skipped."""

from __future__ import annotations

import pytest

from tests.support.peers import in_ci, peer_unavailable


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes"])
def test_in_ci_a_missing_peer_is_a_failure(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci()
    with pytest.raises(pytest.fail.Exception, match="peer unavailable in CI: slapd is missing"):
        peer_unavailable("slapd is missing")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_outside_ci_a_missing_peer_is_skipped_with_the_reason(monkeypatch: pytest.MonkeyPatch,
                                                               value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert not in_ci()
    with pytest.raises(pytest.skip.Exception, match="peer unavailable: slapd is missing"):
        peer_unavailable("slapd is missing")
