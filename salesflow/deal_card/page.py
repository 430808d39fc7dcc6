"""The tab's HTML: plain forms posting back to the card, no scripts, texts from `texts.py`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from html import escape
from zoneinfo import ZoneInfo

from salesflow.deal_card.actions import (
    LOSE_REASONS,
    PROCESS_KINDS,
    SCHEDULE_ROWS,
    offered,
    signed_kinds,
)
from salesflow.deal_card.policy import ROLE_ORDER, Policy
from salesflow.deal_card.texts import Texts
from salesflow.deal_card.why_section import why_section
from salesflow.workflows.causes import AUTOMATIC
from salesflow.workflows.children import LOGIST_PROCESS
from salesflow.workflows.deal import SERVICES
from salesflow.workflows.models import Actor, DealView, HistoryEntry
from salesflow.workflows.why import WhyView

_STYLE = """
body{font:14px/1.4 "Open Sans",Arial,sans-serif;color:#333;margin:12px}
h1{font-size:18px;margin:0 0 8px}h2{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}
.overdue{color:#c00;font-weight:bold}.refusal{color:#c00}.done{color:#080}
form{margin:6px 0;padding:6px;border:1px solid #e5e5e5}.muted{color:#888}
"""


@dataclass
class Notice:
    """The outcome of a submitted action, shown beside its form."""

    action: str
    ok: bool
    message: str
    entered: dict[str, str] = field(default_factory=dict)  # a refused form's values, shown again


@dataclass
class PageContext:
    texts: Texts
    deal_id: int
    actor: Actor
    timezone: str
    now: datetime
    action_url: str
    auth_id: str
    signature: str
    policy: Policy
    view: DealView | None = None
    stage_name: str = ""
    stage_names: dict[str, str] = field(default_factory=dict)  # code → Bitrix24 name
    notice: Notice | None = None
    message: str = ""  # a whole-page message (no process, Temporal down)
    extra_hidden: dict[str, str] = field(default_factory=dict)
    why: WhyView | None = None  # issue 15: the «why» section (why_section.py)
    entered: dict[str, str] = field(default_factory=dict)  # the form being drawn: its values


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _when(moment: datetime | None, timezone: str) -> str:
    if moment is None:
        return ""
    return f"{moment.astimezone(ZoneInfo(timezone)):%d.%m.%Y %H:%M}"


def _money(amount: float) -> str:
    return f"{amount:,.2f}".replace(",", "\u00a0")


def render(ctx: PageContext) -> str:
    t = ctx.texts
    parts = [
        '<!doctype html><html lang="ru"><head><meta charset="utf-8">',
        f"<title>{_e(t('page_title', deal_id=ctx.deal_id))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{_e(t('page_title', deal_id=ctx.deal_id))}</h1>",
        f'<p class="muted" id="actor" data-user-id="{ctx.actor.user_id}">{_e(ctx.actor.name)}</p>',
    ]
    if ctx.message:
        parts.append(f'<p class="refusal" id="message" role="alert">{_e(ctx.message)}</p>')
    if ctx.view is not None:
        parts += _summary(ctx, ctx.view)
        parts += _actions(ctx, ctx.view)
        parts += why_section(ctx.why)
        parts += _history(ctx, ctx.view)
    parts.append("</body></html>")
    return "\n".join(parts)


def _summary(ctx: PageContext, view: DealView) -> list[str]:
    t, tz = ctx.texts, ctx.timezone
    waits = t(f"waits_{view.stage}") if f"waits_{view.stage}" in t.table else ""
    out = [
        "<dl>",
        f"<dt>{_e(t('stage'))}</dt>"
        f'<dd id="stage" data-stage="{_e(view.stage)}">{_e(ctx.stage_name or view.stage)}</dd>',
        f'<dt>{_e(t("waits_for"))}</dt><dd id="waits">{_e(waits)}</dd>',
        f"<dt>{_e(t('responsible'))}</dt>"
        f'<dd id="responsible" data-user-id="{view.manager_id or ""}">'
        f"{_e(view.manager_name or view.manager_id or '—')}</dd>",
        f"<dt>{_e(t('amount'))}</dt><dd>{_e(_money(view.amount))} ₽</dd>",
        "</dl>",
        f'<h2>{_e(t("open_tasks"))}</h2><section id="tasks">',
    ]
    if view.open_tasks:
        out.append(f"<table><tr><th></th><th>{_e(t('deadline'))}</th></tr>")
        for task in view.open_tasks:
            late = task.deadline is not None and task.deadline < ctx.now
            mark = f' <span class="overdue">{_e(t("overdue"))}</span>' if late else ""
            out.append(
                f'<tr data-task-id="{task.task_id}"><td>{_e(task.title)}</td>'
                f"<td>{_e(_when(task.deadline, tz))}{mark}</td></tr>"
            )
        out.append("</table>")
    else:
        out.append(f'<p class="muted">{_e(t("no_open_tasks"))}</p>')
    out.append("</section>")
    if view.deadlines:
        out.append(f'<h2>{_e(t("deadlines"))}</h2><table id="deadlines">')
        for d in view.deadlines:
            mark = f' <span class="overdue">{_e(t("overdue"))}</span>' if d.overdue else ""
            name = _deadline_name(t, d.name)
            out.append(f"<tr><td>{_e(name)}</td><td>{_e(_when(d.due, tz))}{mark}</td></tr>")
        out.append("</table>")
    out.append(f'<h2>{_e(t("payment_schedule"))}</h2><section id="schedule">')
    if view.payment_schedule:
        out.append("<table>")
        for tr in view.payment_schedule:
            state = t(f"tranche_{tr.state}")
            css = ' class="overdue"' if tr.state == "overdue" else ""
            row = t(
                "tranche_row",
                number=tr.number,
                percent=f"{tr.percent:g}",
                amount=_money(tr.amount),
                due=f"{tr.due:%d.%m.%Y}",
            )
            out.append(
                f'<tr data-tranche="{tr.number}" data-state="{tr.state}"><td>{_e(row)}</td>'
                f"<td{css}>{_e(state)}</td></tr>"
            )
        out.append("</table>")
    else:
        out.append(f'<p class="muted">{_e(t("no_schedule"))}</p>')
    out.append("</section>")
    if view.payments:
        out.append(f'<h2>{_e(t("payments"))}</h2><ul id="payments">')
        out += [f"<li>{_e(_money(p.amount))} ₽, {p.paid_on:%d.%m.%Y}</li>" for p in view.payments]
        out.append("</ul>")
    out.append(f'<h2>{_e(t("processes"))}</h2><section id="processes">')
    logist = [p for p in view.processes if p.kind == LOGIST_PROCESS]
    if logist:
        for p in logist:
            out.append(
                f'<p data-logist-state="{p.state}">{_e(t("logist_task"))}:'
                f" {_e(t(f'process_{p.state}'))}</p>"
            )
    else:
        out.append(f'<p class="muted" data-logist-state="none">{_e(t("no_logist_task"))}</p>')
    others = [p for p in view.processes if p.kind != LOGIST_PROCESS]
    if others:
        out.append("<ul>")
        for p in others:
            name = t(f"process_{p.kind}") if f"process_{p.kind}" in t.table else p.kind
            out.append(f"<li>{_e(name)}: {_e(t(f'process_{p.state}'))}</li>")
        out.append("</ul>")
    out.append("</section>")
    return out


def _deadline_name(t: Texts, name: str) -> str:
    base, _, number = name.rpartition("_")
    if number.isdigit() and f"deadline_{base}" in t.table:
        return t(f"deadline_{base}", round=number)
    return t(f"deadline_{name}") if f"deadline_{name}" in t.table else name


def _history(ctx: PageContext, view: DealView) -> list[str]:
    t = ctx.texts
    out = [
        f'<h2>{_e(t("history"))}</h2><table id="history">',
        f"<tr><th>{_e(t('when'))}</th><th>{_e(t('stage'))}</th>"
        f"<th>{_e(t('cause'))}</th><th>{_e(t('who'))}</th></tr>",
    ]
    for entry in reversed(view.history):
        actor = entry.model_dump().get("actor")  # recorded by the workflow once it keeps it
        who = actor.get("name") or actor.get("user_id") if isinstance(actor, dict) else None
        if who is None and entry.code in AUTOMATIC:
            who = t("actor_automatic")
        out.append(
            f"<tr><td>{_e(_when(entry.at, ctx.timezone))}</td>"
            f"<td>{_e(ctx.stage_names.get(entry.stage, entry.stage))}</td>"
            f"<td>{_e(cause_text(entry, ctx))}</td><td>{_e(who or t('actor_unknown'))}</td></tr>"
        )
    out.append("</table>")
    return out


def cause_text(entry: HistoryEntry, ctx: PageContext) -> str:
    """A history cause in Russian: the template `cause_<code>` with its parameters (a value with
    a template `value_<param>_<value>` named by it, a stage (`target`, `final`) by its Bitrix24
    name); an entry
    without a code (recorded before codes, or not coded) as the workflow wrote it."""
    t = ctx.texts
    if not entry.code or f"cause_{entry.code}" not in t.table:
        return entry.cause
    values: dict[str, object] = {}
    for name, value in entry.params.items():
        named = f"value_{name}_{value}"
        if name in ("old_set", "new_set"):  # a document set, named as `document_set` is
            named = f"value_document_set_{value}"
        if name in ("target", "final"):
            stage = f"stage_{value}"
            default = t(stage) if stage in t.table else str(value)
            values[name] = ctx.stage_names.get(str(value), default)
        elif name == "paid_on" and _iso_day(value):
            values[name] = f"{_iso_day(value):%d.%m.%Y}"
        elif named in t.table:
            values[name] = t(named)
        else:
            values[name] = value
    return t(f"cause_{entry.code}", **values)


def _iso_day(value: object) -> date | None:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return None


def _roles(ctx: PageContext, action: str) -> str:
    allowed = ctx.policy.allowed_roles(action)
    return ", ".join(ctx.texts(f"role_{r}") for r in ROLE_ORDER if r in allowed) or "—"


def _actions(ctx: PageContext, view: DealView) -> list[str]:
    t = ctx.texts
    out = [f'<h2>{_e(t("actions"))}</h2><section id="actions">']
    valid = offered(view)
    shown = 0
    for action in valid:
        notice = ctx.notice if ctx.notice and ctx.notice.action == action else None
        if not ctx.policy.may(action, ctx.actor.user_id, view.manager_id):
            label = _LABELS[action](t)
            reason = t("policy_refused", roles=_roles(ctx, action))
            out.append(
                f'<p class="muted not-for-you" data-action="{action}">'
                f"{_e(t('not_for_you', action=label, reason=reason))}</p>"
            )
            if notice is not None:
                out.append(_notice(ctx, notice))
            continue
        shown += 1
        out.append(f'<form method="post" action="{_e(ctx.action_url)}" data-action="{action}">')
        out += _hidden(ctx, action)
        entered = notice.entered if notice is not None and not notice.ok else {}
        out += _FORMS[action](replace(ctx, entered=entered), view)
        out.append("</form>")
        if notice is not None:
            out.append(_notice(ctx, notice))
    if ctx.notice and ctx.notice.action not in valid:
        out.append(_notice(ctx, ctx.notice))
    if not shown:
        out.append(f'<p class="muted" id="no-actions">{_e(t("no_actions"))}</p>')
    out.append("</section>")
    return out


def _notice(ctx: PageContext, notice: Notice) -> str:
    css = "done" if notice.ok else "refusal"
    role = "" if notice.ok else ' role="alert"'
    return f'<p class="{css}" data-notice="{_e(notice.action)}"{role}>{_e(notice.message)}</p>'


def _hidden(ctx: PageContext, action: str) -> list[str]:
    values = {
        "action": action,
        "deal_id": str(ctx.deal_id),
        "AUTH_ID": ctx.auth_id,
        "sig": ctx.signature,
        **ctx.extra_hidden,
    }
    return [f'<input type="hidden" name="{_e(k)}" value="{_e(v)}">' for k, v in values.items()]


def _button(label: str, name: str = "", value: str = "") -> str:
    named = f' name="{_e(name)}" value="{_e(value)}"' if name else ""
    return f'<button type="submit"{named}>{_e(label)}</button>'


def _select(name: str, options: list[tuple[str, str]], chosen: str = "") -> str:
    items = "".join(
        f'<option value="{_e(v)}"{" selected" if v == chosen else ""}>{_e(label)}</option>'
        for v, label in options
    )
    return f'<select name="{_e(name)}">{items}</select>'


def _value(ctx: PageContext, name: str, default: str = "") -> str:
    """` value="…"` of input `name`: what a refused form held, else `default`."""
    value = ctx.entered.get(name, default)
    return f' value="{_e(value)}"' if value else ""


def _f_accept(ctx: PageContext, view: DealView) -> list[str]:
    return [_button(ctx.texts("action_accept"))]


def _f_reject(ctx: PageContext, view: DealView) -> list[str]:
    t = ctx.texts
    return [
        f"<label>{_e(t('field_reject_reason'))}"
        f' <input name="reason" required{_value(ctx, "reason")}></label>',
        _button(t("action_reject")),
    ]


def _f_kp(ctx: PageContext, view: DealView) -> list[str]:
    t = ctx.texts
    return [
        f'<label>{_e(t("field_comment"))} <input name="comment"{_value(ctx, "comment")}></label>',
        _button(t("action_kp_agreed"), "agreed", "yes"),
        _button(t("action_kp_not_agreed"), "agreed", "no"),
    ]


def _f_schedule(ctx: PageContext, view: DealView) -> list[str]:
    t = ctx.texts
    rows = [f"<p>{_e(t('action_schedule'))}</p>"]
    for n in range(1, SCHEDULE_ROWS + 1):
        rows.append(
            f'<div>{n}. <input name="percent_{n}" size="5" inputmode="decimal"'
            f"{_value(ctx, f'percent_{n}')}> {_e(t('field_percent'))}"
            f' <input name="due_{n}" type="date"{_value(ctx, f"due_{n}")}>'
            f" {_e(t('field_due'))}</div>"
        )
    rows.append(_button(t("action_schedule")))
    return rows


def _f_payment(ctx: PageContext, view: DealView) -> list[str]:
    t = ctx.texts
    today = ctx.now.astimezone(ZoneInfo(ctx.timezone)).date()
    return [
        f"<label>{_e(t('field_amount'))}"
        f' <input name="amount" inputmode="decimal" required{_value(ctx, "amount")}></label>',
        f'<label>{_e(t("field_paid_on"))} <input name="paid_on" type="date"'
        f"{_value(ctx, 'paid_on', today.isoformat())}></label>",
        _button(t("action_payment")),
    ]


def _f_tasks(ctx: PageContext, view: DealView) -> list[str]:
    t = ctx.texts
    rows = []
    for s in SERVICES:
        yes = ctx.entered.get(s) == "yes"
        rows.append(
            f"<div>{_e(t(f'service_{s}'))}:"
            f' <label><input type="radio" name="{s}" value="yes"{" checked" if yes else ""}>'
            f" {_e(t('yes'))}</label>"
            f' <label><input type="radio" name="{s}" value="no"{"" if yes else " checked"}>'
            f" {_e(t('no'))}</label>"
            "</div>"
        )
    rows.append(_button(t("action_tasks")))
    return rows


def _f_process(ctx: PageContext, view: DealView) -> list[str]:
    t = ctx.texts
    return [
        _select(
            "kind", [(k, t(f"process_{k}")) for k in PROCESS_KINDS], ctx.entered.get("kind", "")
        ),
        _button(t("action_process")),
    ]


def _f_signed(ctx: PageContext, view: DealView) -> list[str]:
    t = ctx.texts
    return [_button(t(f"signed_{k}"), "kind", k) for k in signed_kinds(view.stage)]


def _f_lose(ctx: PageContext, view: DealView) -> list[str]:
    t = ctx.texts
    return [
        f"<label>{_e(t('field_lose_reason'))} "
        + _select(
            "reason", [(r, t(f"lose_{r}")) for r in LOSE_REASONS], ctx.entered.get("reason", "")
        )
        + "</label>",
        f'<label>{_e(t("field_comment"))} <input name="comment"{_value(ctx, "comment")}></label>',
        _button(t("action_lose")),
    ]


def _f_approval(ctx: PageContext, view: DealView) -> list[str]:
    """R-KP-6: the approver's decision on the running «Согласование» (the item's stage in
    Bitrix24 stays the primary way; the workflow moves the item to agree)."""
    t = ctx.texts
    return [
        f"<label>{_e(t('field_approval_comment'))}"
        f' <input name="comment"{_value(ctx, "comment")}></label>',
        _button(t("action_approve"), "approved", "yes"),
        _button(t("action_disapprove"), "approved", "no"),
    ]


_FORMS = {
    "accept_lead": _f_accept,
    "approval_decision": _f_approval,
    "reject_lead": _f_reject,
    "kp_feedback": _f_kp,
    "set_payment_schedule": _f_schedule,
    "record_payment": _f_payment,
    "request_tasks": _f_tasks,
    "start_process": _f_process,
    "documents_signed": _f_signed,
    "lose_deal": _f_lose,
}
_LABELS = {
    "accept_lead": lambda t: t("action_accept"),
    "reject_lead": lambda t: t("action_reject"),
    "kp_feedback": lambda t: f"{t('action_kp_agreed')} / {t('action_kp_not_agreed')}",
    "set_payment_schedule": lambda t: t("action_schedule"),
    "record_payment": lambda t: t("action_payment"),
    "request_tasks": lambda t: t("action_tasks"),
    "start_process": lambda t: t("action_process"),
    "documents_signed": lambda t: t("action_signed"),
    "lose_deal": lambda t: t("action_lose"),
    "approval_decision": lambda t: t("action_approval"),
}


def action_label(action: str, texts: Texts) -> str:
    label = _LABELS.get(action)
    return label(texts) if label else action
