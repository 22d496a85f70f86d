"""The five vendor-shaped configuration APIs, each a thin translation over the core.

Each dialect module exposes one ``DIALECT`` (see ``common.Dialect``); ``app.py`` installs every
entry of ``DIALECTS``.
"""

from __future__ import annotations

from keyhall.api.dialects import configurations, keycard, logto, luzmo, raidiam
from keyhall.api.dialects.common import Dialect

DIALECTS: tuple[Dialect, ...] = (luzmo.DIALECT, logto.DIALECT, keycard.DIALECT, configurations.DIALECT,
                                 raidiam.DIALECT)
