"""Podman, driven the way ``make test-containers`` runs it on hosts like the CI machine.

- ``podman(*args)``: one ``podman`` command with ``CONTAINERS_CONF`` pointing at this folder's
  ``containers.conf`` (the runc runtime, no default ulimits); its completed process.
- ``require_image(name)``: the image must have been built (by ``make test-containers``); when it
  is missing, or podman is, the test fails in CI and is skipped elsewhere.
- ``Container``: one ``podman run -d --network=host`` container, removed (``podman rm -f`` by its
  id) when the ``with`` block ends.

Host networking: containers listen on 127.0.0.1 ports of the host, so they reach the test peers
(the OpenID provider, PostgreSQL) where the tests started them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

from tests.support.peers import peer_unavailable

HERE = Path(__file__).resolve().parent
IMAGE = os.environ.get("KEYHALL_TEST_IMAGE", "localhost/keyhall:test")
COMMAND_TIMEOUT = 300.0  # seconds for one podman command (a compose `up` builds nothing, but starts five)


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(HERE / "containers.conf")}


def podman(*args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout,
                          check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def require_image(name: str = IMAGE) -> str:
    if shutil.which("podman") is None:
        peer_unavailable("podman is not installed (make test-containers installs it)")
    if podman("image", "exists", name, check=False).returncode != 0:
        peer_unavailable(f"image {name} is missing (make test-containers builds it)")
    return name


def wait_ready(url: str, timeout: float) -> float:
    """Seconds until ``GET url`` answers 200; AssertionError past ``timeout``."""
    started = time.monotonic()
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if client.get(url).status_code == 200:
                    return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{url} did not answer 200 within {timeout:g} s")
            time.sleep(0.1)


class Container:
    """A detached container on the host's network; ``exec`` runs a command in it."""

    def __init__(self, image: str, env: Mapping[str, str], args: Sequence[str] = (), *, name_prefix: str = "keyhall"):
        self.image = image
        self.env = dict(env)
        self.args = list(args)
        self.name = f"{name_prefix}-{uuid.uuid4().hex[:10]}"
        self.id: str | None = None

    def start(self) -> Container:
        env_args = [item for key, value in self.env.items() for item in ("-e", f"{key}={value}")]
        # Without systemd here, podman cannot schedule the periodic check; `podman healthcheck run` runs it.
        done = podman("run", "-d", "--name", self.name, "--network=host", "--health-interval=disable",
                      *env_args, self.image, *self.args)
        self.id = done.stdout.strip()
        return self

    def exec(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *command, check=check)

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return (done.stdout + done.stderr)[-4000:]

    def remove(self) -> None:
        if self.id is not None:
            podman("rm", "-f", "-v", "-t", "5", self.id, check=False)  # -v: its anonymous /data volume too
            self.id = None

    def __enter__(self) -> Container:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.remove()


@contextlib.contextmanager
def running(image: str, env: Mapping[str, str], args: Sequence[str] = ()) -> Iterator[Container]:
    with Container(image, env, args) as container:
        yield container
