"""What the setup portal tells an IT admin to do at their identity provider, per IdP: which protocol
and provider preset Keyhall uses for it, the steps, and the attributes to send. Text only: the
values themselves (ACS URL, entity ID, redirect URI, SCIM URL, the attribute names the provider preset
reads) come from the connection or directory."""

from __future__ import annotations

from dataclasses import dataclass

from keyhall.core.vocabulary import Protocol, Provider


@dataclass(frozen=True)
class Guide:
    key: str
    title: str
    protocol: Protocol
    provider: Provider
    steps: tuple[str, ...]


GUIDES: dict[str, Guide] = {g.key: g for g in (
    Guide("entra", "Microsoft Entra ID", Protocol.SAML, Provider.AZURE_AD, (
        "In the Entra admin center open Enterprise applications → New application → Create your own "
        "application (non-gallery).",
        "Single sign-on → SAML. Set Identifier (Entity ID) and Reply URL (ACS URL) to the values below.",
        "Keep the default Attributes & Claims (emailaddress, givenname, surname, name): Keyhall reads the "
        "claim names listed below.",
        "Copy the App Federation Metadata Url and paste it below.",
        "Assign the users or groups who may sign in.",
    )),
    Guide("okta", "Okta", Protocol.SAML, Provider.OKTA, (
        "In the Okta Admin Console open Applications → Create App Integration → SAML 2.0.",
        "Single sign-on URL = the ACS URL below (tick “Use this for Recipient URL and Destination URL”); "
        "Audience URI (SP Entity ID) = the SP entity ID below.",
        "Name ID format EmailAddress; Attribute Statements: email, firstName, lastName (and a groups filter if "
        "you map groups).",
        "On the Sign On tab copy the Metadata URL and paste it below; assign people to the app.",
    )),
    Guide("google", "Google Workspace", Protocol.SAML, Provider.GOOGLE_WORKSPACE, (
        "In the Google Admin console open Apps → Web and mobile apps → Add app → Add custom SAML app.",
        "Download the IdP metadata (or copy it) and paste it below.",
        "Service provider details: ACS URL and Entity ID from below; Name ID format EMAIL, Name ID Basic "
        "Information > Primary email.",
        "Attribute mapping: Primary email → email, First name → firstName, Last name → lastName.",
        "Turn the app on for the organizational units that should sign in.",
    )),
    Guide("adfs", "Microsoft AD FS", Protocol.SAML, Provider.GENERIC, (
        "In AD FS Management add a Relying Party Trust; import the SP metadata URL below (or download the "
        "file and import it).",
        "Add a claim issuance rule “Send LDAP Attributes as Claims”: E-Mail-Addresses → email and Name ID, "
        "Given-Name → firstName, Surname → lastName.",
        "Paste the federation metadata URL (https://<your AD FS>/FederationMetadata/2007-06/FederationMetadata.xml) "
        "below.",
    )),
    Guide("jumpcloud", "JumpCloud", Protocol.SAML, Provider.GENERIC, (
        "In the JumpCloud Admin Portal open SSO Applications → Add New Application → Custom SAML App.",
        "SP Entity ID and ACS URL from below; SAMLSubject NameID = email; IdP Entity ID of your choice.",
        "User attributes: email, firstName, lastName.",
        "Save, export the metadata and paste it below; bind the user groups that may sign in.",
    )),
    Guide("saml", "Another SAML 2.0 identity provider", Protocol.SAML, Provider.GENERIC, (
        "Create a SAML 2.0 application for Keyhall at your identity provider.",
        "Give it the ACS URL and SP entity ID below (or import the SP metadata).",
        "Send the user's email as the NameID and the attributes listed below; sign the assertion or response "
        "with RSA-SHA256.",
        "Paste the IdP's metadata URL or XML below.",
    )),
    Guide("oidc", "Another OpenID Connect provider", Protocol.OIDC, Provider.GENERIC, (
        "Register a web application (confidential client) at your provider.",
        "Allowed redirect URI = the redirect URI below; grant type authorization code.",
        "Paste the issuer URL, the client ID and the client secret below.",
    )),
    Guide("ldap", "LDAP directory", Protocol.LDAP, Provider.GENERIC, (
        "Create a read-only service account that may search the people in your directory.",
        "Make the server reachable from Keyhall (LDAPS or StartTLS recommended).",
        "Fill in the server, the base DN, the service account and the search filter below; Keyhall tries a "
        "bind before saving.",
    )),
)}

DIRECTORY_STEPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "okta": ("Okta", (
        "Open your app in Okta → General → enable SCIM provisioning; then the Provisioning tab → Integration.",
        "SCIM connector base URL = the SCIM base URL below; Unique identifier field = userName.",
        "Authentication mode HTTP Header: paste the token as the Bearer token; enable Push New Users, "
        "Push Profile Updates, Push Groups.",
    )),
    "entra": ("Microsoft Entra ID", (
        "Enterprise applications → your app → Provisioning → Automatic.",
        "Tenant URL = the SCIM base URL below; Secret Token = the token.",
        "Test Connection, save, and start provisioning.",
    )),
    "google": ("Google Workspace", (
        "Admin console → Apps → Web and mobile apps → your app → Auto-provisioning.",
        "Endpoint URL = the SCIM base URL below; access token = the token.",
        "Map the attributes and turn auto-provisioning on.",
    )),
    "jumpcloud": ("JumpCloud", (
        "SSO Applications → your app → Identity Management → SCIM 2.0.",
        "Base URL = the SCIM base URL below; Token Key = the token; Test Connection, then Activate.",
    )),
    "generic": ("Another SCIM 2.0 client", (
        "Point your identity provider's SCIM 2.0 client at the SCIM base URL below.",
        "Authenticate with the token as a Bearer token (Authorization: Bearer <token>).",
    )),
}
