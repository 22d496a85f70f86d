"""The floor: a bare FastAPI route served by uvicorn from the same venv, with the serving options
``keyhall serve`` uses (no access log, no proxy headers, uvicorn's automatic choice of event loop and
HTTP parser, which picks uvloop and httptools when they are installed).

    .venv/bin/python -m bench.bare --port 8001      # GET /bare -> {"id": ..., "name": ..., ...}

``POST /bare/Users`` reads a JSON body and answers it back with an id, 201: the floor of a SCIM
``POST /Users`` (``bench.scim``).
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from fastapi import FastAPI, Request

app = FastAPI()

_BODY = {"id": "0b9d7c7e-3f1c-4c55-9f0e-2f6f5f0d8c11", "name": "bare", "status": "active", "domains": ["bare.test"]}


@app.get("/bare")
async def bare() -> dict[str, object]:
    return _BODY


@app.post("/bare/Users", status_code=201)
async def bare_create(request: Request) -> dict[str, Any]:
    body = await request.json()
    return {**body, "id": str(uuid.uuid4())}


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m bench.bare")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False, proxy_headers=False)


if __name__ == "__main__":
    main()
