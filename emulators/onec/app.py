"""An emulated 1C:Enterprise base behind its standard OData interface, as an ASGI app.

    app = create_app()                       # /trade/odata/standard.odata/, odata:odata
    app.state.base                           # the in-memory OneCBase (inspect, set faults)
    run(host, port, base, user, password)    # `salesflow emulate onec`

It behaves like a live base, quirks included (shared/research/onec.md): Basic auth with
UTF-8 credentials, Atom unless JSON is asked for, Int64 as strings, zone-less dates, zero
GUIDs, 404 echoing an unknown or unpublished set, 500/-1 business errors, If-Match
ignored, tabular parts replaced whole, long strings truncated, `ibsession` sessions.
Admin endpoints live under `/_emulator/` (see `emu/admin.py`).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from emulators.onec.admin import router as admin_router
from emulators.onec.faults import FaultInjector
from emulators.onec.odata import Publication, handle
from emulators.onec.seed import KP2_NUMBER, KP_NUMBER, KP_TOTAL, ROMASHKA_INN, seed_guid
from emulators.onec.state import Faults, OneCBase

ODATA_METHODS = ["GET", "POST", "PATCH", "PUT", "MERGE", "DELETE"]


def create_app(
    base: str = "trade",
    user: str = "odata",
    password: str = "odata",
    state: OneCBase | None = None,
    *,
    profile: str = "ut11",
    extension: bool = False,
) -> FastAPI:
    """`profile`: the standard configuration served (ut11, erp2, bp3); `extension`: the
    optional salesflow extension is installed (docs/ONEC.md). Ignored when `state` is given."""
    app = FastAPI(
        title="1C:Enterprise OData emulator",
        docs_url="/_emulator/docs",
        redoc_url=None,
        openapi_url="/_emulator/openapi.json",
    )
    app.state.base = state if state is not None else OneCBase(profile=profile, extension=extension)
    app.state.publication = Publication(base, user, password)
    prefix = f"/{base}/odata/standard.odata"

    async def service_root(request: Request) -> Response:
        return await handle(request, "")

    async def odata(request: Request, rest: str) -> Response:
        return await handle(request, rest)

    app.add_api_route(prefix, service_root, methods=ODATA_METHODS, include_in_schema=False)
    app.add_api_route(
        prefix + "/{rest:path}", odata, methods=ODATA_METHODS, include_in_schema=False
    )
    app.include_router(admin_router)
    app.add_middleware(FaultInjector, prefix=f"/{base}/")
    return app


def run(
    host: str = "127.0.0.1",
    port: int = 8082,
    base: str = "trade",
    user: str = "odata",
    password: str = "odata",
    profile: str = "ut11",
    extension: bool = False,
) -> None:
    """Serve the emulator in the foreground until interrupted."""
    import uvicorn

    app = create_app(base, user, password, profile=profile, extension=extension)
    uvicorn.run(app, host=host, port=port, log_level="warning")


__all__ = [
    "KP2_NUMBER",
    "KP_NUMBER",
    "KP_TOTAL",
    "ROMASHKA_INN",
    "Faults",
    "OneCBase",
    "create_app",
    "run",
    "seed_guid",
]
