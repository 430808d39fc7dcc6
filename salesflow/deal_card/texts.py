"""The deal card's texts (Russian): defaults here, any of them replaced by
`[deal_card.templates]` in the configuration. Placeholders use `str.format` names."""

from __future__ import annotations

from collections.abc import Mapping

from salesflow.config.settings import ConfigError

DEFAULT_CARD_TEXTS: dict[str, str] = {
    "page_title": "Сделка №{deal_id}",
    "tab_title": "Процесс сделки",  # the tab's name in the deal card (`salesflow app install`)
    "stage": "Стадия",
    "waits_for": "Ожидается",
    "responsible": "Ответственный",
    "amount": "Сумма",
    "open_tasks": "Открытые задачи",
    "no_open_tasks": "Открытых задач нет.",
    "deadline": "Срок",
    "overdue": "просрочено",
    "deadlines": "Сроки процесса",
    "payment_schedule": "График платежей",
    "no_schedule": "График платежей не задан.",
    "tranche_row": "Платёж {number}: {percent}% — {amount} ₽ до {due}",
    "payments": "Поступившие оплаты",
    "processes": "Процессы и задания",
    "logist_task": "Задание логисту в 1С",
    "no_logist_task": "Задание логисту в 1С не ставилось.",
    "history": "История",
    "who": "Кто",
    "cause": "Причина",
    "when": "Когда",
    "actions": "Действия",
    "no_actions": "Сейчас по сделке нет действий для вас.",
    "not_for_you": "«{action}» недоступно: {reason}",
    "done": "Готово: {action}.",
    "refused": "Не выполнено: {reason}",
    "unknown_outcome": (
        "Процесс сделки не ответил за {seconds} с — результат неизвестен. Обновите вкладку"
        " через минуту и проверьте историю."
    ),
    "no_process": "По этой сделке процесс не запущен (сделка не в воронке «Продажа»?).",
    "closed": "Сделка закрыта ({stage}); действий больше нет.",
    "temporal_down": "Процесс сделки сейчас недоступен; повторите позже.",
    "forbidden": "Доступ запрещён: {reason}",
    "forbidden_portal": "вызов пришёл не с портала компании",
    "forbidden_token": (
        "авторизация пользователя недействительна или истекла, откройте вкладку заново"
    ),
    "forbidden_form": "форма устарела или подделана, откройте вкладку заново",
    "bad_placement": "вкладка открыта не из карточки сделки",
    "portal_down": "Bitrix24 не ответил при проверке пользователя; повторите позже.",
    # The workflow's deadlines (`state.deadlines[].name`; a number suffix is the round).
    "deadline_take_into_work": "Взять заявку в работу",
    "deadline_kp_agreement": "Согласовать КП с клиентом",
    "deadline_kp_feedback": "Обратная связь по КП, раунд {round}",
    "deadline_payment": "Оплата по счёту, раунд {round}",
    "deadline_closing_documents": "Подписанные закрывающие документы",
    # Stages: what the deal waits for (PIPELINE.md codes).
    "waits_NEW": "менеджер принимает заявку в работу или отказывает (с причиной)",
    "waits_IN_WORK": "проверка товарных позиций и КП из 1С",
    "waits_KP": "обратная связь клиента по КП",
    "waits_CONTRACT": "согласование Счета/Договора внутри компании и подписание с клиентом",
    "waits_INVOICE": "оплата по счёту",
    "waits_LAUNCH": "график платежей и запуск реализации",
    "waits_ACCEPTED": "выполнение работ",
    "waits_TO_SHIP": "упаковка, проверка оплаты и отгрузка",
    "waits_SHIPPED": "подписанные Акт и УПД",
    "waits_WON": "ничего: сделка успешна",
    "waits_LOSE": "ничего: сделка провалена",
    # Actions (the buttons) and their fields.
    "action_accept": "Принять заявку",
    "action_reject": "Отказ",
    "field_reject_reason": "Причина отказа (обязательно)",
    "action_kp_agreed": "КП согласовано",
    "action_kp_not_agreed": "КП не согласовано",
    "field_comment": "Комментарий",
    "action_schedule": "Задать график платежей",
    "field_percent": "%",
    "field_due": "Дата",
    "action_payment": "Отметить оплату",
    "field_amount": "Сумма, ₽",
    "field_paid_on": "Дата оплаты",
    "action_tasks": "Поставить задания",
    "yes": "Да",
    "no": "Нет",
    "service_engineers": "Требуется поставить задание инженерам",
    "service_purchasing": "Требуется поставить задание закупщикам",
    "service_logistics": "Требуется поставить задание логистике",
    "service_production": "Требуется поставить задание производству",
    "service_lawyer": "Требуется проверка контрагента юристом",
    "service_metrologist": "Требуется поставить задание метрологу",
    "action_process": "Запустить процесс",
    "process_import_order": "Заказ Импорт",
    "process_production": "Производство",
    "process_purchasing": "Закупки",
    "action_signed": "Подписано",
    "signed_invoice": "Счет подписан",
    "signed_contract": "Договор подписан",
    "signed_act": "Акт подписан",
    "signed_upd": "УПД подписан",
    "action_lose": "Сделка провалена",
    "field_lose_reason": "Причина",
    "lose_NO_MONEY": "Нет денег",
    "lose_COMPETITOR": "Выбрали конкурента",
    "lose_NOT_TARGET": "Нецелевой клиент",
    "lose_NO_DECISION": "Не приняли решение",
    "lose_TOO_LONG": "Долгие сроки",
    "lose_OTHER": "Другое (укажите комментарий)",
    # States.
    "tranche_planned": "ожидается",
    "tranche_reminded": "напоминание отправлено",
    "tranche_overdue": "просрочен",
    "tranche_paid": "оплачен",
    "process_running": "в работе",
    "process_done": "выполнено",
    "process_failed": "ошибка",
    "actor_unknown": "—",
    # Roles (who may do what) and refusals.
    "role_manager": "менеджер по продажам",
    "role_responsible": "ответственный за сделку",
    "role_rop": "руководитель отдела продаж",
    "role_accountant": "бухгалтер",
    "role_logist": "логист",
    "role_anyone": "любой сотрудник",
    "policy_refused": "это могут сделать только: {roles}",
    # Input checks of the forms.
    "input_reason_required": "укажите причину отказа",
    "input_comment_required_other": "для причины «Другое» нужен комментарий",
    "input_bad_number": "«{value}» — не число",
    "input_bad_date": "«{value}» — не дата (ГГГГ-ММ-ДД)",
    "input_no_tranches": "заполните хотя бы один платёж (процент и дату)",
    "input_tranche_incomplete": "платёж {number}: укажите и процент, и дату",
    "input_amount_positive": "сумма должна быть больше нуля",
    "input_no_service": "выберите «Да» хотя бы для одного задания",
    "input_unknown_choice": "неизвестный вариант «{value}»",
    "input_unknown_action": "неизвестное действие",
    # The workflow's refusals (validator messages) in Russian; see refusals.py.
    "wf_already_decided": "заявка уже принята в работу или отклонена",
    "wf_not_a_manager": "вы не в списке менеджеров по продажам (portal.users.managers)",
    "wf_wrong_stage": "на стадии «{stage}» это действие недоступно",
    "wf_no_feedback_awaited": "обратная связь по КП сейчас не ожидается",
    "wf_schedule_set": "график платежей уже задан",
    "wf_schedule_invalid": "график платежей неверен: {details}",
    "wf_paid_in_future": "дата оплаты в будущем",
    "wf_paid_too_early": "дата оплаты намного раньше начала сделки",
    "wf_closed": "сделка уже закрыта",
    "wf_already_losing": "сделка уже закрывается как проваленная",
    "wf_other_needs_comment": "для причины «Другое» нужен комментарий",
    "wf_required_fields": "не заполнены обязательные поля: {fields}",
    "wf_other": "процесс сделки отклонил действие ({details})",
}


def card_texts(overrides: Mapping[str, str]) -> dict[str, str]:
    """The defaults with the configured replacements; an unknown name fails at start."""
    unknown = sorted(set(overrides) - set(DEFAULT_CARD_TEXTS))
    if unknown:
        raise ConfigError(f"deal_card.templates.{unknown[0]}: unknown text name")
    return {**DEFAULT_CARD_TEXTS, **overrides}


class Texts:
    """`texts("name", **values)`: a text filled in; a missing placeholder stays visible."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self.table = card_texts(overrides or {})

    def __call__(self, name: str, **values: object) -> str:
        template = self.table[name]
        try:
            return template.format(**values)
        except (KeyError, IndexError, ValueError):
            return template
