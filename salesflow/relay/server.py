"""`salesflow relay`: the relay app with its database, Temporal client and Bitrix24 client."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn

from salesflow.config.log import configure_logging
from salesflow.config.settings import RelaySettings, Settings
from salesflow.config.temporal_client import connect
from salesflow.relay.app import create_app
from salesflow.relay.limits import guarded_h11
from salesflow.store.db import database_engine, init_db


def uvicorn_config(app: Any, relay: RelaySettings, **options: Any) -> uvicorn.Config:
    """The relay's uvicorn: h11 with a bounded request head (size and time), a bounded number
    of connections plus requests in progress and a short keep-alive (README «Security»)."""
    return uvicorn.Config(
        app,
        http=guarded_h11(relay.header_timeout_seconds),
        h11_max_incomplete_event_size=relay.max_header_bytes,
        limit_concurrency=relay.max_connections,
        timeout_keep_alive=relay.keep_alive_seconds,
        lifespan="on",
        **options,
    )


async def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve until interrupted. Temporal may be down at start: events are recorded meanwhile."""
    seen = settings.observability
    configure_logging(seen.log_level, seen.structured_logs)
    engine = database_engine(settings.database)
    try:
        await init_db(engine)
        temporal_client = await connect(settings, lazy=True)
        app = create_app(settings, engine=engine, temporal_client=temporal_client)
        config = uvicorn_config(
            app,
            settings.relay,
            host=host or settings.relay.host,
            port=settings.relay.port if port is None else port,
            log_level=seen.log_level.lower(),
            log_config=None,  # uvicorn's records go through the structured root handler
        )
        await uvicorn.Server(config).serve()
    finally:
        await engine.dispose()


def run(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Blocking entry point for the CLI."""
    asyncio.run(serve(settings, host, port))
