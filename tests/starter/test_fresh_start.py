"""`salesflow dev` starts all of it fresh: the emulators begin from their seed, so do Temporal
and the relay's database under the data folder."""

from __future__ import annotations

from pathlib import Path

from emulators.local_stack import fresh_start, sqlite_file


def test_a_restart_removes_temporal_and_the_relay_database(tmp_path: Path) -> None:
    data = tmp_path / ".salesflow"
    data.mkdir()
    for name in ("temporal.db", "temporal.db-wal", "salesflow.db", "bitrix24-last-deal-id"):
        (data / name).write_text("old")
    (data / "mail").mkdir()
    (data / "mail" / "1.eml").write_text("kept")
    removed = fresh_start(data, f"sqlite+aiosqlite:///{data / 'salesflow.db'}")
    assert {p.name for p in removed} == {
        "temporal.db",
        "temporal.db-wal",
        "salesflow.db",
        "bitrix24-last-deal-id",
    }
    assert sorted(p.name for p in data.iterdir()) == ["mail"]


def test_a_database_outside_the_data_folder_is_left_alone(tmp_path: Path) -> None:
    data = tmp_path / ".salesflow"
    data.mkdir()
    elsewhere = tmp_path / "prod.db"
    elsewhere.write_text("keep")
    assert fresh_start(data, f"sqlite+aiosqlite:///{elsewhere}") == []
    assert elsewhere.exists()
    assert sqlite_file("postgresql+asyncpg://u@h/db") is None
