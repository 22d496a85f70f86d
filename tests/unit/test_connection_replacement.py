"""``connection_service.replacement``: what a full replacement gives the policy fields a body leaves out."""

from __future__ import annotations

from keyhall.core.connection_service import replacement
from keyhall.core.presets import OIDC_STANDARD_CLAIMS, SAML_GENERIC_ATTRIBUTES
from keyhall.core.vocabulary import GroupProvisioning, Protocol, Provider, UserProvisioning


def test_absent_policy_fields_take_a_new_connections_values() -> None:
    filled = replacement({"name": "corp", "oidc": {"client_id": "c"}}, Provider.GENERIC, Protocol.OIDC)
    assert filled == {"name": "corp", "oidc": {"client_id": "c"}, "user_provisioning": UserProvisioning.AUTO,
                      "group_provisioning": GroupProvisioning.SYNC, "group_mappings": [],
                      "attribute_mappings": OIDC_STANDARD_CLAIMS}


def test_sent_fields_win_and_sent_mappings_lie_over_the_preset() -> None:
    sent = {"user_provisioning": "manual", "group_provisioning": "sync",
            "group_mappings": [{"idp_group": "a", "group": "b"}], "attribute_mappings": {"email": "mail"}}
    filled = replacement(sent, Provider.GENERIC, Protocol.SAML, group_provisioning=GroupProvisioning.NONE)
    assert filled["user_provisioning"] == "manual"
    assert filled["group_provisioning"] == "sync"
    assert filled["group_mappings"] == [{"idp_group": "a", "group": "b"}]
    assert filled["attribute_mappings"] == {**SAML_GENERIC_ATTRIBUTES, "email": "mail"}


def test_the_calling_api_names_its_own_group_provisioning_default() -> None:
    filled = replacement({}, Provider.GENERIC, Protocol.OIDC, group_provisioning=GroupProvisioning.NONE)
    assert filled["group_provisioning"] is GroupProvisioning.NONE
