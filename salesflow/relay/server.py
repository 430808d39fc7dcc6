"""`salesflow relay`: the relay app with its database, Temporal client and Bitrix24 client."""

from __future__ import annotations

import asyncio

import uvicorn

from salesflow.config.log import configure_logging
from salesflow.config.settings import Settings
from salesflow.config.temporal_client import connect
from salesflow.relay.app import create_app
from salesflow.store.db import init_db, make_engine


async def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve until interrupted. Temporal may be down at start: events are recorded meanwhile."""
    seen = settings.observability
    configure_logging(seen.log_level, seen.structured_logs)
    engine = make_engine(settings.database.url)
    try:
        await init_db(engine)
        temporal_client = await connect(settings, lazy=True)
        app = create_app(settings, engine=engine, temporal_client=temporal_client)
        config = uvicorn.Config(
            app,
            host=host or settings.relay.host,
            port=settings.relay.port if port is None else port,
            log_level=seen.log_level.lower(),
            log_config=None,  # uvicorn's records go through the structured root handler
            lifespan="on",
        )
        await uvicorn.Server(config).serve()
    finally:
        await engine.dispose()


def run(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Blocking entry point for the CLI."""
    asyncio.run(serve(settings, host, port))
