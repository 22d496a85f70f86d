"""SAML 2.0 service-provider code, pure and named after the specifications it follows.

- ``xml``: a hardened parser for untrusted SAML documents (no DTDs, no entities, no network).
- ``certificates``: X.509 certificates as found in ``<ds:X509Certificate>`` (XML-DSig §4.4.4,
  RFC 5280), with their expiry reported.
- ``metadata``: an identity provider's metadata (saml-metadata-2.0-os §2.3, §2.4.1, §2.4.3).
- ``authn_request``: AuthnRequests and the HTTP-Redirect / HTTP-POST bindings (saml-core §3.4.1,
  saml-bindings §3.4, §3.5).
- ``sp_metadata``: Keyhall's own SP metadata per connection (saml-metadata-2.0-os §2.4.4).
- ``xmldsig``, ``encryption``, ``response``: verifying and decrypting what the IdP posts to the ACS
  (XML-DSig 1.1, XML Encryption 1.1, saml-core §2.3.3, §3.2.2, saml-profiles §4.1.4).

Nothing here imports a web framework, an HTTP client or the database.
"""
