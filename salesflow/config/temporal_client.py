"""One way to reach Temporal: the settings' address/namespace plus the SDK's envconfig."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

from salesflow.config.settings import Settings


async def connect(settings: Settings, **overrides: Any) -> Client:
    """Connect with the pydantic converter; TEMPORAL_API_KEY / TLS variables are honoured."""
    options: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    options["target_host"] = settings.temporal.address
    options["namespace"] = settings.temporal.namespace
    options.update(overrides)
    return await Client.connect(data_converter=pydantic_data_converter, **options)
