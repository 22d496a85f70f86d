"""An authorize request's stored form: ``as_dict`` is a whole, independent copy, and round-trips."""

from __future__ import annotations

import typing
from dataclasses import asdict

from keyhall.provider.authorize import AuthorizeRequest

REQUEST = AuthorizeRequest(client_id="client", redirect_uri="https://product.test/cb", scope="openid email",
                           state="s", nonce="n", code_challenge="c" * 43, code_challenge_method="S256",
                           prompt="login", login_hint="a@example.com", organization=None, connection=None,
                           domain="example.com", response_mode="form_post")


def test_as_dict_is_the_dataclass_copy_and_round_trips() -> None:
    assert REQUEST.as_dict() == asdict(REQUEST)
    assert AuthorizeRequest.from_dict(REQUEST.as_dict()) == REQUEST


def test_every_field_is_immutable_so_a_shallow_copy_is_whole() -> None:
    """``as_dict`` copies shallowly; a list or dict field would then be shared with the stored form."""
    assert {str(hint) for hint in typing.get_type_hints(AuthorizeRequest).values()} <= {"<class 'str'>", "str | None"}
