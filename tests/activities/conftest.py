"""Fixtures of the 1C activity tests: both emulators over real HTTP (see `systems.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.activities.systems import Systems, running_systems


@pytest.fixture
async def systems() -> AsyncIterator[Systems]:
    async with running_systems() as running:
        yield running
