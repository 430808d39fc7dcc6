"""`whatif` end to end: recorded deals, new rules → per deal and total differences."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from salesflow.config.settings import ConfigError, load_settings
from salesflow.config.snapshot import build_rules, rules_diff, rules_version, versioned
from salesflow.whatif.diff import DealDiff, compare, outcome, totals
from salesflow.whatif.extract import Recording
from salesflow.whatif.replay import replay, start_replay_server
from salesflow.workflows.models import DealRules

RulesFor = Callable[[Recording | None], DealRules]  # None: as of today


def recorded_rules(rec: Recording) -> DealRules:
    return DealRules.model_validate(rec.input["rules"])


def new_rules(path: Path) -> RulesFor:
    """The rules to try, per deal: from a configuration file (TOML; the snapshot is built as
    on the day the deal started, so its calendar is the deal's) or a rules snapshot (JSON)."""
    if path.suffix == ".json":
        try:
            snapshot = versioned(DealRules.model_validate_json(path.read_text(encoding="utf-8")))
        except (OSError, ValidationError) as exc:
            raise ConfigError(f"{path}: not a rules snapshot ({exc})") from None
        return lambda rec: snapshot
    settings = load_settings(path, environ={})
    return lambda rec: build_rules(settings, today=rec.started_at.date() if rec else None)


@dataclass
class DealReport:
    deal_id: int
    workflow_id: str
    version_was: str
    version_would_be: str
    rules_changed: list[tuple[str, Any, Any]]
    diff: DealDiff

    def as_json(self) -> dict[str, Any]:
        return {
            "deal_id": self.deal_id,
            "workflow_id": self.workflow_id,
            "rules_version": {"was": self.version_was, "would_be": self.version_would_be},
            "rules_changed": [
                {"rule": k, "was": a, "would_be": b} for k, a, b in self.rules_changed
            ],
            **self.diff.as_json(),
        }


async def what_if(recordings: list[Recording], rules_for: RulesFor) -> list[DealReport]:
    """Each deal replayed twice on one private time-skipping server: with its own rules and
    with the new ones; the difference of the two is what the new rules would have changed."""
    env = await start_replay_server()
    reports: list[DealReport] = []
    try:
        for rec in recordings:
            was_rules, new = recorded_rules(rec), rules_for(rec)
            was = outcome(await replay(env, rec, was_rules))
            would = outcome(await replay(env, rec, new))
            reports.append(
                DealReport(
                    deal_id=rec.deal_id,
                    workflow_id=rec.workflow_id,
                    version_was=was_rules.version or rules_version(was_rules),
                    version_would_be=new.version or rules_version(new),
                    rules_changed=rules_diff(was_rules, new),
                    diff=compare(was, would),
                )
            )
    finally:
        await env.shutdown()
    return reports


def report_json(reports: list[DealReport]) -> str:
    body = {
        "deals": [r.as_json() for r in reports],
        "total": totals([r.diff for r in reports]),
    }
    return json.dumps(body, ensure_ascii=False, indent=2, default=str)
