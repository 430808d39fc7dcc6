"""The worker's Prometheus metrics (the SDK runtime's) are served where configured."""

from __future__ import annotations

import asyncio

import httpx
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from emulators.asgi_server import free_port
from salesflow.config.settings import Settings
from salesflow.config.temporal_client import connect
from salesflow.worker import running_worker


async def test_worker_serves_sdk_metrics(dev_env, tmp_path) -> None:
    port = free_port()
    runtime = Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{port}"))
    )
    settings = Settings.model_validate(
        {
            "temporal": {
                "address": dev_env.client.service_client.config.target_host,
                "task_queue": "metrics-test",
            },
            "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"},
        }
    )
    client = await connect(settings, runtime=runtime)
    async with running_worker(client, settings):
        body = ""
        async with httpx.AsyncClient() as http:
            for _ in range(50):
                body = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                if "temporal_" in body:
                    break
                await asyncio.sleep(0.2)
    assert "temporal_" in body
