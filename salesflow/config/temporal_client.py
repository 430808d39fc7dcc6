"""One way to reach Temporal: the settings' address/namespace plus the SDK's envconfig."""

from __future__ import annotations

import re
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

from salesflow.config.settings import Settings, StartupError

_CAUSE = re.compile(r'(?:message|error): "([^"]+)"|ConnectError\("([^"]+)"')


class TemporalUnavailable(StartupError, RuntimeError):
    """The Temporal frontend of `temporal.address` cannot be reached at start (a RuntimeError,
    as the SDK's own failure to connect)."""


async def connect(settings: Settings, **overrides: Any) -> Client:
    """Connect with the pydantic converter; TEMPORAL_API_KEY / TLS variables are honoured.

    A failure to connect is TemporalUnavailable: one line naming the setting and the fix."""
    options: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    options["target_host"] = settings.temporal.address
    options["namespace"] = settings.temporal.namespace
    options.update(overrides)
    try:
        return await Client.connect(data_converter=pydantic_data_converter, **options)
    except RuntimeError as exc:
        raise TemporalUnavailable(unavailable(options["target_host"], exc)) from None


def unavailable(address: str, error: BaseException) -> str:
    text = str(error).removeprefix("Failed client connect: ")
    causes = [a or b for a, b in _CAUSE.findall(text)]
    reason = "; ".join(dict.fromkeys(causes)) if causes else text.splitlines()[0][:200]
    return (
        f"temporal.address (TEMPORAL_ADDRESS): Temporal at {address} is not reachable ({reason}):"
        " start it (`make run` starts a local one) or set TEMPORAL_ADDRESS to its frontend"
    )
