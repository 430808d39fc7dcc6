"""`salesflow config-check`, `relay` and `worker` at start (issue 11): a public or missing
application token is refused, bad values are named, and a dependency that is missing at start
is one line naming the setting and the fix — no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from salesflow.starter.cli import app

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "a-portal-token-4f2d"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No salesflow.toml in the working folder, no settings inherited from the environment."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("SALESFLOW_", "BITRIX24_", "TEMPORAL_", "DATABASE_", "ONEC_", "SMTP_")):
            monkeypatch.delenv(name)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _invoke(*args: str, **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({}, "bitrix24.application_token (BITRIX24_APPLICATION_TOKEN) is not set"),
        ({"BITRIX24_APPLICATION_TOKEN": "dev-app-token"}, "public token 'dev-app-token'"),
    ],
)
def test_r_11_config_check_refuses_a_missing_or_public_token(
    env: dict[str, str], said: str
) -> None:
    code, output = _invoke("config-check", **env)
    assert code == 2 and said in output
    assert "configuration is valid" not in output


def test_config_check_passes_with_a_portal_token() -> None:
    code, output = _invoke("config-check", BITRIX24_APPLICATION_TOKEN=TOKEN)
    assert (code, output.strip()) == (0, "configuration is valid (Temporal localhost:7233)")


def test_r_11_config_check_names_an_empty_stage_id(tmp_path: Path) -> None:
    (tmp_path / "salesflow.toml").write_text('[portal.stages]\nNEW = ""\n', encoding="utf-8")
    code, output = _invoke("config-check", BITRIX24_APPLICATION_TOKEN=TOKEN)
    assert code == 2 and "portal.stages.NEW: Value error, must not be empty" in output


def test_r_11_the_relay_does_not_start_with_the_public_token() -> None:
    code, output = _invoke("relay", "--port", "0", BITRIX24_APPLICATION_TOKEN="dev-app-token")
    assert code == 2 and "accepted only by the local stack (salesflow dev)" in output


def test_r_11_relay_reads_its_token_from_a_file_and_names_a_down_postgresql(
    tmp_path: Path,
) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n", encoding="utf-8")
    url = f"postgresql+asyncpg://salesflow:pw@127.0.0.1:{_closed_port()}/salesflow"
    code, output = _invoke("relay", "--application-token-file", str(token), DATABASE_URL=url)
    assert code == 2, output
    [line] = output.strip().splitlines()
    assert line.startswith("database.url (DATABASE_URL): PostgreSQL at 127.0.0.1:")
    assert "start it or fix the URL" in line and "pw" not in line


def test_r_11_relay_names_an_unusable_sqlite_path(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("", encoding="utf-8")
    url = f"sqlite+aiosqlite:///{tmp_path}/plain/salesflow.db"
    code, output = _invoke("relay", DATABASE_URL=url, BITRIX24_APPLICATION_TOKEN=TOKEN)
    assert code == 2
    [line] = output.strip().splitlines()
    assert line.startswith("database.url (DATABASE_URL): cannot create the SQLite file")


def test_r_11_worker_names_a_malformed_temporal_address() -> None:
    code, output = _invoke("worker", TEMPORAL_ADDRESS="http://localhost:7233")
    assert code == 2
    assert "temporal.address (from TEMPORAL_ADDRESS): Value error, must be host:port" in output


WORKER_COMMANDS = {
    "salesflow worker": ["-c", "from salesflow.starter.cli import main; main()", "worker"],
    "python worker.py": [str(ROOT / "worker.py")],  # CONTRACT.md, from a checkout
}


@pytest.mark.parametrize("command", WORKER_COMMANDS)
def test_r_11_worker_with_temporal_down_is_one_line_without_traceback(
    tmp_path: Path, command: str
) -> None:
    """The real entry points, as processes: exit 2 and one line on the console."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{_closed_port()}",
    }
    done = subprocess.run(
        [sys.executable, *WORKER_COMMANDS[command]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, output
    assert "Traceback" not in output
    [line] = output.splitlines()
    assert line.startswith("temporal.address (TEMPORAL_ADDRESS): Temporal at 127.0.0.1:")
    assert "Connection refused" in line and "set TEMPORAL_ADDRESS" in line


def test_the_token_file_option_wins_over_the_environment(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("dev-app-token", encoding="utf-8")  # refused: shows the file was read
    code, output = _invoke(
        "relay", "--application-token-file", str(token), BITRIX24_APPLICATION_TOKEN=TOKEN
    )
    assert code == 2 and "public token 'dev-app-token'" in output


def test_onec_profile_is_a_choice_of_the_known_profiles() -> None:
    from salesflow.integrations.onec.profiles import PROFILES_NAMES
    from salesflow.starter.cli import OneCProfile

    assert tuple(OneCProfile) == PROFILES_NAMES
    code, output = _invoke("emulate", "onec", "--profile", "ut10")
    assert code == 2 and "ut11" in output and "bp3" in output  # typer lists the choices
