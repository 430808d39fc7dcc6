"""The benches still run end to end at their tiniest sizes, so they do not rot.

Each bench module is imported and its `main()` run with the smallest arguments; what they
measure is not checked (benches print figures, they never assert). `main()` runs in a thread
of its own because it calls `asyncio.run`, which must not touch the test session's loop.
"""

from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor

import pytest

TINY = {
    "bench.relay": ["--events", "10", "--deals", "3", "--concurrency", "2", "--timeout", "30"],
    "bench.open_deals": ["--deals", "10", "--queries", "3", "--timeout", "30"],
    "bench.open_deals:doubles": ["--deals", "10", "--activities", "doubles", "--queries", "3"],
    "bench.history_events": ["--rounds", "2", "--suggest-after", "120"],
    "bench.portal_budget": ["--deals", "2", "--workers", "1", "--rate", "50", "--timeout", "30"],
    "bench.scale_out": ["--deals", "3", "--workers", "1", "--timeout", "30"],
    "bench.relay_flood": [
        "--events",
        "5",
        "--interval",
        "1",
        "--connections",
        "2",
        "--half-open",
        "2",
    ],
}


@pytest.mark.parametrize("case", sorted(TINY))
def test_bench_runs_at_its_tiniest(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(case.split(":")[0])
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(module.main, TINY[case]).result(timeout=60)
    assert capsys.readouterr().out.strip(), f"{case} printed nothing"
