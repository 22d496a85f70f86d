"""LDAP (RFC 4510 and its companions), the client side, as pure code.

- ``filters``: search filters built from a configured template and a person's input, with the
  input escaped as an assertion value (RFC 4515 §3) so that it can never change the filter.

Nothing here performs I/O; ``keyhall.idp.ldap_client`` talks to directories (RFC 4511, 4513).

ldap3 2.9.1, its latest release, reads pyasn1's old names ``tagMap``/``typeMap``, which pyasn1
0.6.1 and later deprecate with a ``DeprecationWarning`` raised while ldap3 is imported
(cannatag/ldap3#1159, fixed upstream but not released). ldap3 is imported once here with that
one warning silenced, so runs that turn warnings into errors (the test suite) still work and no
other warning is hidden.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"(tagMap|typeMap) is deprecated", category=DeprecationWarning)
    import ldap3  # noqa: F401
