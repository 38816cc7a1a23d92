"""Liveness and readiness for load balancers and orchestrators.

- `GET /healthz`: the process answers (200); 503 once a background task could not be
  kept running (the process is stopping: restart it).
- `GET /readyz`: the database answers and takes writes, and the LISTEN connection is up
  (200), else 503 with what is wrong, so a balancer sends no traffic to a process that
  cannot serve it (a read-only database during a failover refuses every submission).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.context import Services
from db import insight

CHECK_TIMEOUT_SECONDS = 2.0


def router(services: Callable[[], Services | None]) -> APIRouter:
    """The health routes, reading the process's services through `services`."""
    routes = APIRouter()

    @routes.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        current = services()
        if current is not None and current.hub.failed:
            return JSONResponse({"status": "failed"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @routes.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        current = services()
        if current is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        database = "ok"
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                if not await insight.writable(current.database):
                    database = "read-only"
        except Exception as exc:  # any failure means: not ready
            database = f"unavailable: {type(exc).__name__}"
        listener = "ok" if current.hub.connected else "reconnecting"
        ready = database == "ok" and listener == "ok"
        return JSONResponse(
            {
                "status": "ready" if ready else "not ready",
                "database": database,
                "listener": listener,
            },
            status_code=200 if ready else 503,
        )

    return routes
