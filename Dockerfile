# Keyhall's production image.
#
#   podman build --format docker -t keyhall .      (or: docker build -t keyhall .)
#
# Stage 1 builds wheels of Keyhall and of every runtime dependency and installs them into a virtual
# environment at /opt/keyhall; stage 2 is a slim Debian with Python and that environment only (no
# compiler, no pip, no wheels). It runs `keyhall serve` as an unprivileged user: the database is
# migrated on start (under a lock, so several replicas may start at once), configuration comes only
# from KEYHALL_* variables and the /data volume, and logs are JSON lines on stdout. Nothing secret
# is in the image: KEYHALL_SECRET_KEYS comes from the environment, or the key file is made in /data
# on first start.

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /tools
WORKDIR /src
# The dependencies first, in a layer of their own that is rebuilt only when pyproject.toml changes.
# (An empty package stands in for Keyhall there, built apart so nothing of it reaches the real build.)
COPY pyproject.toml README.md ./
RUN mkdir -p /stub/src/keyhall && cp pyproject.toml README.md /stub/ && touch /stub/src/keyhall/__init__.py \
 && /tools/bin/pip wheel --quiet --no-cache-dir --prefer-binary --wheel-dir /wheels /stub \
 && rm -r /wheels/keyhall-*.whl /stub
COPY src ./src
RUN /tools/bin/pip wheel --quiet --no-cache-dir --no-deps --wheel-dir /wheels . \
 && python3 -m venv --without-pip /opt/keyhall \
 && /tools/bin/pip --python /opt/keyhall/bin/python install --quiet --no-cache-dir --no-index \
      --find-links /wheels keyhall

FROM debian:bookworm-slim
# ca-certificates: the identity providers' HTTPS; xmlsec1: the development-mode test IdP signs SAML with it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates xmlsec1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin keyhall \
 && mkdir /data && chown keyhall:keyhall /data && chmod 700 /data
COPY --from=build /opt/keyhall /opt/keyhall
ENV PATH=/opt/keyhall/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KEYHALL_DATA_DIR=/data \
    KEYHALL_HOST=0.0.0.0 \
    KEYHALL_PORT=8000
USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 8000
# /readyz answers 503 when the database is unreachable: the container turns unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('KEYHALL_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["keyhall"]
CMD ["serve"]
