"""R-X4 / R-X9 reminders on the time-skipping server: working hours of business days only, a
daily cap, a ladder manager → РОП → director, counted over a simulated week."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from temporalio.testing import WorkflowEnvironment

from salesflow.config.settings import Settings
from salesflow.config.snapshot import build_rules
from salesflow.workflows import rules as R
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import DealRules, PaymentSchedule, Tranche
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import drive_to, pass_days, until

MSK = ZoneInfo("Europe/Moscow")
DIRECTOR = 11


def working_rules(**reminders: object) -> DealRules:
    settings = Settings.model_validate(
        {
            "portal": {"users": {"director": DIRECTOR}},
            "rules": {
                "reminders": {
                    "interval_minutes": {"take_into_work": 30},
                    "daily_cap": 4,
                    "ladder_step": 2,
                    **reminders,
                }
            },
        }
    )
    return build_rules(settings)


async def skip_to_friday(env: WorkflowEnvironment, rules: DealRules, clock: time) -> datetime:
    """Move the server's clock to the next business Friday at `clock` (Moscow), the
    following Monday being a business day too."""
    calendar = R.Calendar(rules.calendar)
    now = await env.get_current_time()
    day = now.astimezone(MSK).date() + timedelta(days=1)
    while not (
        day.weekday() == 4
        and calendar.is_business_day(day)
        and calendar.is_business_day(day + timedelta(days=3))
    ):
        day += timedelta(days=1)
    target = datetime.combine(day, clock, MSK)
    await env.sleep(target - now)
    return target


def in_working_hours(moment: datetime, rules: DealRules) -> bool:
    local = moment.astimezone(MSK)
    return R.Calendar(rules.calendar).is_business_day(local.date()) and (
        time(9, 0) <= local.time() < time(18, 0)
    )


async def test_r_x4_r_x9_r_new_4_untaken_lead_reminded_in_working_hours_capped_laddered(
    run_deal, skip_env
) -> None:
    rules = working_rules()
    start = await skip_to_friday(skip_env, rules, time(16, 0))
    portal = FakePortal(new_deal(7001))
    async with run_deal(portal, rules) as handle:
        await pass_days(skip_env, 1)
        first_day = [n for n in portal.notifications if ":new:reminder:" in n.key]
        await pass_days(skip_env, 6)
        await handle.query(DealWorkflow.state)
    overdue = [n for n in portal.notifications if ":new:overdue" in n.key]
    assert sorted(n.user_ids for n in overdue) == [[2], [3, 4]]  # once each (R-NEW-4)
    reminders = [n for n in portal.notifications if ":new:reminder:" in n.key]
    at = {n.key: portal.notified_at[n.key] for n in reminders}
    # 24 h from Friday 16:00: the overdue notices at 17:00, one reminder at 17:30, then none
    assert len(first_day) == 1
    assert all(in_working_hours(moment, rules) for moment in at.values()), at
    per_day = Counter(moment.astimezone(MSK).date() for moment in at.values())
    assert max(per_day.values()) == 4
    calendar = R.Calendar(rules.calendar)
    business = [
        d
        for d in (start.date() + timedelta(days=i) for i in range(1, 8))
        if calendar.is_business_day(d)
    ]
    assert len(reminders) == 1 + 4 * len(business)
    # the ladder: two reminders to the managers, then the РОП joins, then the director
    ordered = sorted(reminders, key=lambda n: int(n.key.rsplit(":", 1)[1]))
    assert [n.user_ids for n in ordered[:6]] == [
        [3, 4],
        [3, 4],
        [3, 4, 2],
        [3, 4, 2],
        [3, 4, 2, DIRECTOR],
        [3, 4, 2, DIRECTOR],
    ]


async def test_r_ps_1_r_x4_r_x9_tranche_due_on_saturday_told_in_working_hours(
    run_deal, skip_env
) -> None:
    rules = calendar_rules(
        onec_poll_seconds=86_400, reminders={"working_hours_only": True, "ladder_step": 2}
    )
    start = await skip_to_friday(skip_env, rules, time(10, 0))
    saturday = start.date() + timedelta(days=1)
    portal = FakePortal(new_deal(7002))
    async with run_deal(portal, rules) as handle:
        await drive_to(handle, portal, "LAUNCH")
        plan = PaymentSchedule(
            tranches=[Tranche(percent=50, due=start.date()), Tranche(percent=50, due=saturday)]
        )
        await handle.execute_update(DealWorkflow.set_payment_schedule, plan)
        await until(handle, lambda v: v.payment_schedule[1].state == "reminded")
        await pass_days(skip_env, 5)  # Sat, Sun, Mon, Tue, Wed
        view = await until(handle, lambda v: v.payment_schedule[1].state == "overdue")
    monday = start.date() + timedelta(days=3)
    # due on a day off: due on the next business day at its close (ГК РФ ст. 193)
    for key in ("deal:7002:ps:2:overdue", "deal:7002:ps:2:overdue:rop"):
        overdue = portal.notified_at[key].astimezone(MSK)
        assert (overdue.date(), overdue.time().replace(microsecond=0)) == (monday, time(18, 0))
    reminded = portal.notified_at["deal:7002:ps:2:reminder"]
    repeats = {
        k: v
        for k, v in portal.notified_at.items()
        if k.startswith("deal:7002:ps:2:overdue:") and not k.endswith("rop")
    }
    assert in_working_hours(reminded, rules)
    assert all(in_working_hours(moment, rules) for moment in repeats.values()), repeats
    assert list(repeats) == ["deal:7002:ps:2:overdue:1"]  # Wed 09:00: Tue 18:00 is after hours
    assert view.payment_schedule[0].state == "paid"
