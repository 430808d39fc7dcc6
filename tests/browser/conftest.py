"""A real browser for the deal card: Debian's chromium driven by the `playwright` package.

The browser is Debian's (`/usr/bin/chromium`), never a download (`playwright install` is not
used). `make test` (and so `.ci/run`) installs it once before the suite; when it is still
missing here and we are root (CI), `apt-get install -y chromium` runs once for the session.
A browser that cannot be had fails the tests on CI (root) with the reason; elsewhere they skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Quiet, offline, sandbox-less (root in a container): nothing reaches out on its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "browser"


def _apt_install() -> str:
    """`apt-get install -y chromium` (after `apt-get update` if the lists are stale)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", "chromium"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr)[-2000:]


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        root = os.geteuid() == 0
        if not root:
            pytest.skip(f"{CHROMIUM} is missing and we are not root: apt-get install chromium")
        output = _apt_install() if shutil.which("apt-get") else "no apt-get on this machine"
        if not CHROMIUM.exists():
            pytest.fail(f"{CHROMIUM} could not be installed with apt-get:\n{output}")
    return CHROMIUM


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Screenshots of the tab (gitignored, kept after the run)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
async def browser(chromium: Path) -> AsyncIterator[object]:
    """A browser context of a fresh profile, for the module."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:  # a dev dependency (pyproject.toml): make install has it
        pytest.fail("the `playwright` package is missing: pip install -e '.[dev]'")
    with tempfile.TemporaryDirectory(prefix="salesflow-chromium-") as profile:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(chromium),
                args=CHROMIUM_ARGS,
                headless=True,
                locale="ru-RU",
                viewport={"width": 1100, "height": 1400},
            )
            context.set_default_timeout(10_000)  # an element that is not there fails soon
            try:
                yield context
            finally:
                await context.close()
