#!/usr/bin/env python3
"""``podman``, for podman-compose 1.0.3 (Debian bookworm) running services with ``network_mode: host``.

That podman-compose adds ``--net PROJECT_default --network-alias SERVICE`` to every ``podman run``,
even beside ``--network host``, and podman refuses the pair. This wrapper (podman-compose's
``--podman-path``) drops those two options when the command also asks for the host's network, and
runs podman with everything else unchanged. Newer podman-compose releases need no wrapper.
"""

import itertools
import os
import sys


def arguments(argv: list[str]) -> list[str]:
    if "run" not in argv or not any(a in ("--network=host", "--net=host") for a in _joined(argv)):
        return argv
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--net", "--network-alias"):
            skip = True
            continue
        kept.append(arg)
    return kept


def _joined(argv: list[str]) -> list[str]:
    return [f"{a}={b}" for a, b in itertools.pairwise(argv)] + argv


if __name__ == "__main__":
    os.execvp("podman", ["podman", *arguments(sys.argv[1:])])
