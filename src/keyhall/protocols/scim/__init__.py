"""SCIM 2.0 (RFC 7643 resources and schema, RFC 7644 protocol): filters, PATCH, discovery."""
