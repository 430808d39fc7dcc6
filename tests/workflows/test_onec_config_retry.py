"""A 1C step refused as a configuration problem (issue 13 item 5): the deal tells the РОП once,
waits, and retries the step once the configuration is fixed — on the signal that
`salesflow doctor --fix-applied` sends, or on the retry interval. Time-skipping server,
activities as doubles."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from salesflow.config.templates import DEFAULT_TEMPLATES
from salesflow.workflows.children import LOGIST_PROCESS
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import KpFeedback
from salesflow.workflows.names import SIGNAL_ONEC_CONFIG_FIXED
from salesflow.workflows.onec_models import (
    CREATE_ONEC_TASK,
    LOAD_KP_INTO_DEAL,
    CreateOneCTaskRequest,
    LoadKpRequest,
    LoadKpResult,
)
from tests.workflows.conftest import calendar_rules, deal_running, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import drive_to, until

PROBLEM = (
    "1С не принимает запрос: в базе нет «КодОКЕИ» (Catalog_УпаковкиЕдиницыИзмерения; профиль ut11)."
)


class MisconfiguredPortal(FakePortal):
    """The portal's doubles, with a КП load that 1C refuses until `fixed`."""

    fixed: bool = False
    refusals: int = 0

    def activities(self) -> list:
        others = [a for a in super().activities() if a.__name__ != "load_kp_into_deal"]
        portal = self

        @activity.defn(name=LOAD_KP_INTO_DEAL)
        async def load_kp_into_deal(req: LoadKpRequest) -> LoadKpResult:
            if not portal.fixed:
                portal.refusals += 1
                raise ApplicationError(PROBLEM, type="1C.ConfigurationProblem", non_retryable=True)
            portal.kp_loads.append(req)
            return LoadKpResult(loaded=True, changed=True, kp_number="КП-000123")

        return [*others, load_kp_into_deal]


def failure_reports(portal: FakePortal) -> list[str]:
    return [n.key for n in portal.notifications if ":failure:" in n.key]


async def _waiting(handle: WorkflowHandle, portal: MisconfiguredPortal) -> None:
    await drive_to(handle, portal, "KP")
    await until(handle, lambda v: bool(failure_reports(portal)))


async def test_r_kp_2_config_problem_told_once_retried_on_fix_signal(
    skip_env: WorkflowEnvironment,
) -> None:
    portal = MisconfiguredPortal(new_deal(2601))
    async with deal_running(skip_env, portal) as handle:
        await _waiting(handle, portal)
        view = await handle.query(DealWorkflow.state)
        assert view.kp_round == 0  # the deal waits: no feedback round before the КП is in
        assert portal.kp_loads == []
        await handle.signal(SIGNAL_ONEC_CONFIG_FIXED)  # not fixed yet: retried, refused again
        await until(handle, lambda v: portal.refusals >= 2)
        portal.fixed = True
        await handle.signal(SIGNAL_ONEC_CONFIG_FIXED)
        await until(handle, lambda v: v.kp_round == 1)
        await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=True))
        view = await until(handle, lambda v: v.stage == "CONTRACT")
    assert [r.key for r in portal.kp_loads] == ["deal:2601:kp:load_from_1c"]
    # Told once to the РОП, with the object and attribute named, not on every retry.
    assert failure_reports(portal) == ["deal:2601:failure:kp:load_from_1c"]
    told = next(n for n in portal.notifications if ":failure:" in n.key)
    assert "КодОКЕИ" in told.message and told.user_ids == [calendar_rules().people.rop]
    assert DEFAULT_TEMPLATES["notify_onec_config_wait"].format(minutes=60) in told.message
    causes = [h.cause for h in view.history]
    assert sum("kp:load_from_1c failed" in c for c in causes) == 1
    assert any("after the 1C configuration was fixed" in c for c in causes)


async def test_r_kp_2_config_problem_retried_on_the_interval_without_signal(
    skip_env: WorkflowEnvironment,
) -> None:
    portal = MisconfiguredPortal(new_deal(2602))
    rules = calendar_rules()
    rules.onec_config_retry_minutes = 120
    async with deal_running(skip_env, portal, rules) as handle:
        await _waiting(handle, portal)
        assert portal.refusals == 1
        await skip_env.sleep(timedelta(minutes=125))
        await until(handle, lambda v: portal.refusals == 2)
        portal.fixed = True
        await skip_env.sleep(timedelta(minutes=125))
        await until(handle, lambda v: v.kp_round == 1)
    assert portal.refusals == 2
    assert len(portal.kp_loads) == 1
    assert failure_reports(portal) == ["deal:2602:failure:kp:load_from_1c"]


async def test_r_kp_2_other_1c_refusals_are_not_retried(skip_env: WorkflowEnvironment) -> None:
    """A refusal that is no configuration problem (КП not found) fails the step for good."""
    portal = FakePortal(new_deal(2603))
    inner = portal.activities

    def activities() -> list:
        others = [a for a in inner() if a.__name__ != "load_kp_into_deal"]

        @activity.defn(name=LOAD_KP_INTO_DEAL)
        async def load_kp_into_deal(req: LoadKpRequest) -> LoadKpResult:
            portal.kp_loads.append(req)
            raise ApplicationError("КП не найдено", type="1C.KpNotFound", non_retryable=True)

        return [*others, load_kp_into_deal]

    portal.activities = activities  # type: ignore[method-assign]
    async with deal_running(skip_env, portal) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round == 1)
        await skip_env.sleep(timedelta(hours=3))
        await handle.signal(SIGNAL_ONEC_CONFIG_FIXED)
        await until(handle, lambda v: v.kp_round == 1)
    assert len(portal.kp_loads) == 1
    assert failure_reports(portal) == ["deal:2603:failure:kp:load_from_1c"]


class TaskRefusingPortal(FakePortal):
    """The portal's doubles, with a 1C that refuses to create the logist's task until `fixed`."""

    fixed: bool = False
    refusals: int = 0

    def activities(self) -> list:
        others = [a for a in super().activities() if a.__name__ != "create_onec_task"]
        portal = self

        @activity.defn(name=CREATE_ONEC_TASK)
        async def create_onec_task(req: CreateOneCTaskRequest) -> str:
            if not portal.fixed:
                portal.refusals += 1
                raise ApplicationError(
                    "1С не принимает запрос: в базе нет «ИдентификаторБитрикс24»",
                    type="1C.ConfigurationProblem",
                    non_retryable=True,
                )
            portal.onec_tasks.setdefault(req.key, {"ref": f"ref-{req.key}", "done": False})
            return portal.onec_tasks[req.key]["ref"]

        return [*others, create_onec_task]


async def test_r_ac_3_logist_task_config_problem_told_once_created_after_fix(
    skip_env: WorkflowEnvironment,
) -> None:
    portal = TaskRefusingPortal(new_deal(2604))
    rules = calendar_rules()
    async with deal_running(skip_env, portal, rules) as handle:
        await drive_to(handle, portal, "ACCEPTED")
        view = await until(handle, lambda v: any(p.kind == LOGIST_PROCESS for p in v.processes))
        mirror = next(p.workflow_id for p in view.processes if p.kind == LOGIST_PROCESS)
        await until(
            handle, lambda v: any(":configuration_problem" in n.key for n in portal.notifications)
        )
        await skip_env.sleep(timedelta(minutes=rules.onec_config_retry_minutes + 5))
        await until(handle, lambda v: portal.refusals >= 2)  # retried on the interval
        portal.fixed = True
        await skip_env.client.get_workflow_handle(mirror).signal(SIGNAL_ONEC_CONFIG_FIXED)
        await until(handle, lambda v: bool(portal.onec_tasks))
        view = await handle.query(DealWorkflow.state)
    told = [n for n in portal.notifications if ":configuration_problem" in n.key]
    assert len(told) == 1 and told[0].user_ids == [rules.people.rop]
    assert "ИдентификаторБитрикс24" in told[0].message and "№2604" in told[0].message
    assert list(portal.onec_tasks) == ["deal:2604:ac:ship_goods:1c"]
    assert next(p for p in view.processes if p.kind == LOGIST_PROCESS).state == "running"
