"""User-facing texts (Russian, from the customer's specification) as configurable templates.

Placeholders use `str.format` names; a configured template (`[templates]`) replaces the default
of the same name. One mechanism for every text: the workflow's (tasks, notices, messages), the
deal card's and the refusals'. `salesflow config-check` verifies each configured name and
placeholder (`template_problems`).
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Formatter

DEFAULT_TEMPLATES: dict[str, str] = {
    "document_set_invoice": "Счёт",
    "document_set_invoice_contract": "Счёт-договор",
    "document_set_contract_and_invoice": "Договор и счёт",
    # Task titles (R-IW-2, R-KP-*, R-CT-1, R-INV-*, R-LA-2, R-AC-*, R-TS-2, R-SH-*).
    "task_check_products": "Проверить товарные позиции",
    "task_send_kp": "Отправить КП клиенту",
    "task_kp_feedback": "Связаться с клиентом, получить обратную связь по КП",
    "task_kp_objection": "Отработать возражение, переформировать КП",
    "task_send_documents_to_client": (
        "Проверить товарные позиции, отправить Счет, Договор на согласование и подписание"
        " с клиентом"
    ),
    "task_internal_approval": (
        "Отправить Счет, Договор (в зависимости от выбранной вариации) на согласование"
        " внутри компании"
    ),
    "task_get_payment": "Получить оплату от клиента",
    "task_invoice_objection": "Отработать возражение, переформировать Счет",
    "task_control_works": "Проконтролировать выполнение работ",
    "task_control_packing": "Проконтролировать упаковку",
    "task_check_payment": "Проверить оплату по клиенту",
    "task_ship_goods": "Отгрузить товар клиенту",
    "task_control_shipping": "Проконтролировать отгрузку-доставку",
    "task_send_act": "Отправить Акты выполненных работ, получить подписанный документ",
    "task_send_upd": "Отправить УПД, получить подписанный документ",
    "task_description": "Сделка: {deal_title} (№{deal_id}).",
    # R-X6: tasks requested for services; R-X7: sub-processes.
    "task_request_engineers": "Задание инженерам по сделке «{deal_title}»",
    "task_request_purchasing": "Задание закупщикам по сделке «{deal_title}»",
    "task_request_logistics": "Задание логистике по сделке «{deal_title}»",
    "task_request_production": "Задание производству по сделке «{deal_title}»",
    "task_request_lawyer": "Проверить контрагента по сделке «{deal_title}»",
    "task_request_metrologist": "Задание метрологу по сделке «{deal_title}»",
    "process_import_order": "Заказ Импорт",
    "process_production": "Производство",
    "process_purchasing": "Закупки",
    "task_process": "Процесс «{process}» по сделке «{deal_title}»",
    "approval_item_title": "Согласование: {deal_title} (№{deal_id}), {document_set}",
    # Notifications to people (R-NEW-1, R-NEW-4, R-X3, R-X4).
    "notify_new_deal": (
        "Новая заявка «{deal_title}» (№{deal_id}). Возьмите её в работу в течение {deadline}."
    ),
    "notify_take_overdue_rop": (
        "Заявку «{deal_title}» (№{deal_id}) никто не взял в работу за {deadline}."
    ),
    "notify_take_reminder": (
        "Напоминание: заявка «{deal_title}» (№{deal_id}) всё ещё не взята в работу."
    ),
    "notify_lead_rejected": "Заявка «{deal_title}» (№{deal_id}) отклонена: {reason}.",
    "notify_lose_reason_missing": (
        "Сделка «{deal_title}» (№{deal_id}) возвращена на стадию: для перевода в «Сделка"
        " провалена» укажите: {fields}."
    ),
    "missing_internal_approval": "Внутреннее согласование",
    "notify_missing_fields": (
        "Сделка «{deal_title}» (№{deal_id}) не может перейти на следующую стадию:"
        " не заполнены поля: {fields}."
    ),
    "notify_deadline_missed": (
        "Просрочено: «{what}» по сделке «{deal_title}» (№{deal_id}), срок был {deadline}."
    ),
    "notify_deadline_reminder": (
        "Напоминание: «{what}» по сделке «{deal_title}» (№{deal_id}) всё ещё не выполнено,"
        " срок был {deadline}."
    ),
    "notify_deadline_missed_rop": (
        "Эскалация: «{what}» по сделке «{deal_title}» (№{deal_id}) просрочено"
        " (ответственный: {manager})."
    ),
    "notify_approval_rejected": (
        "Согласование по сделке «{deal_title}» (№{deal_id}) отклонено: {comment}."
        " Сделка возвращена на доработку КП."
    ),
    "notify_payment_reminder": (
        "Напоминание: {due} ожидается платёж {number} по графику ({amount} ₽) по сделке"
        " «{deal_title}» (№{deal_id})."
    ),
    "notify_payment_overdue": (
        "Просрочен платёж {number} по графику ({amount} ₽, срок {due}) по сделке"
        " «{deal_title}» (№{deal_id})."
    ),
    "notify_payment_overpaid": (
        "Переплата по сделке «{deal_title}» (№{deal_id}): получено {received} ₽ при сумме"
        " {owed} ₽, излишек {excess} ₽."
    ),
    "notify_payment_overdue_rop": (
        "Эскалация: просрочен платёж {number} по графику ({amount} ₽, срок {due}) по сделке"
        " «{deal_title}» (№{deal_id}), ответственный: {manager}."
    ),
    "onec_task_withdrawn": "Задача отменена: сделка Bitrix24 №{deal_id} провалена.",
    "notify_payment_reversed": (
        "Платёж {document} ({amount} ₽) по сделке «{deal_title}» (№{deal_id}) отменён в 1С"
        " (проведение снято или документ помечен на удаление) — оплата по графику снова ожидается."
    ),
    "notify_onec_outage": (
        "1С недоступна уже {minutes} мин.; шаг «{step}» по сделке «{deal_title}» (№{deal_id})"
        " будет выполнен автоматически, когда 1С снова ответит."
    ),
    "notify_process_done": "Процесс «{process}» по сделке «{deal_title}» (№{deal_id}) завершён.",
    # Messages to the client (R-IW-1, R-WON-1, R-X5).
    "client_subject": "Ваша заявка №{deal_id}",
    "client_taken_into_work": (
        "Уважаемый клиент! Ваша заявка взята в обработку. Ваш персональный менеджер"
        " {manager_name}, {manager_position}, {manager_phone}, {manager_email}"
    ),
    "client_won_feedback": (
        "Уважаемый клиент! Мы рады сотрудничать с вами и будем признательны, если вы"
        " оставите отзыв о нашей работе."
    ),
    "client_kp_sent": (
        "Уважаемый клиент! Коммерческое предложение по вашей заявке №{deal_id} подготовлено"
        " и направлено вам. Ваш менеджер свяжется с вами для обратной связи."
    ),
    "client_invoice_issued": (
        "Уважаемый клиент! По вашей заявке №{deal_id} выставлен счёт. Спасибо, что выбрали нас."
    ),
    "client_shipped": "Уважаемый клиент! Ваш заказ по заявке №{deal_id} отгружен.",
    "client_documents_sent": (
        "Уважаемый клиент! Закрывающие документы по заказу №{deal_id} направлены вам."
    ),
    # E-mail to the accountant (R-SH-3).
    "mail_accountant_subject": "Подписанные документы по сделке №{deal_id} «{deal_title}»",
    "mail_accountant_body": (
        "Добрый день!\n\nДокументы по сделке «{deal_title}» (№{deal_id}) подписаны клиентом:\n"
        "{documents}\n\nПисьмо отправлено автоматически."
    ),
    # The linked deal in the «Инженеры» pipeline (R-WON-2).
    "engineers_deal_title": "Инженеры: {deal_title} (из сделки №{deal_id})",
    # The stages by their Bitrix24 names (the seed's table; the portal may name them otherwise).
    "stage_NEW": "Новая заявка",
    "stage_IN_WORK": "Взят в работу",
    "stage_KP": "КП",
    "stage_CONTRACT": "Договор",
    "stage_INVOICE": "Счет",
    "stage_LAUNCH": "Запуск реализации сделки",
    "stage_ACCEPTED": "Принят",
    "stage_TO_SHIP": "К отгрузке",
    "stage_SHIPPED": "Отгружен/Доставлен",
    "stage_WON": "Сделка успешна",
    "stage_LOSE": "Сделка провалена",
    # A 1C step refused as a configuration problem: said after 1C's refusal (told once).
    "notify_onec_config_wait": (
        "Сделка ждёт на этом шаге и повторит его, когда конфигурация 1С будет исправлена"
        " (каждые {minutes} мин. или сразу после `salesflow doctor --fix-applied`)."
    ),
    # The logist's 1C task refused as a configuration problem (told once to the РОП).
    "notify_onec_task_config_problem": (
        "salesflow: сделка №{deal_id}: задача логиста не создана в 1С: {problem} Задача будет"
        " создана, как только конфигурация будет исправлена (`salesflow doctor --fix-applied`)."
    ),
    # R-KP-2: deal product rows with no 1C nomenclature (any direction).
    "onec_rows_unmatched": (
        "Товары сделки без номенклатуры 1С: {rows}. Укажите во внешнем коде товара каталога"
        " (XML_ID) ссылку 1С (Ref_Key), артикул или код номенклатуры; `salesflow doctor`"
        " покажет все такие товары."
    ),
    # Timeline comments on the deal.
    "timeline_stage_moved": "Стадия сделки: {stage_name}. Причина: {cause}.",
    # A timeline comment: the decision's text, its moment and number (unique, issue 15).
    "timeline_stamp": "{text} — salesflow, {when}, решение №{seq}",
    # `salesflow deal why`, the `why` query and the deal card (issue 15): one line per
    # decision kind; placeholders are the decision's inputs (see README "why").
    "why_heading": "Почему сделка здесь и чего она ждёт",
    "why_stage_entered": "стадия «{stage_name}»: {cause}",
    "why_stage_refused": (
        "перевод на стадию «{stage_name}» отменён: не заполнены {empty}; сделка возвращена"
    ),
    "why_task_created": "создана задача «{title}» (ответственный {responsible}){deadline_text}",
    "why_message_sent": "отправлено сообщение ({to}): {text}",
    "why_document_set": "{set_name}: сумма {compared}",
    "why_approval_needed": "{set_name}: нужно внутреннее согласование, согласование запущено",
    "why_approval_skipped": "{set_name}: внутреннее согласование не нужно",
    "why_deadline_armed": "срок «{what}» назначен: {due}",
    "why_deadline_moved": "срок «{what}» перенесён: {was} → {due}",
    "why_deadline_met": "срок «{what}» ({due}) выполнен вовремя",
    "why_deadline_missed": "срок «{what}» пропущен",
    "why_deadline_dropped": "срок «{what}» ({due}) снят: сделка проиграна",
    "why_escalation": "эскалация ({to}): {text}",
    "why_refusal": "отклонено действие «{subject}»: {reason}",
    "why_failure_told": "сбой сообщён РОП: {text}",
    "why_actor": " — {who}",
    "why_until": ", срок {due}",
    "why_older": "более ранние решения (сводка): {counts}",
    "why_waiting": "Сейчас: стадия «{stage_name}» с {since}; сделка ждёт: {what}.",
    "why_closed": "Сделка закрыта: «{stage_name}» с {since}.",
    "why_waits_deadline": "«{what}» до {due}{late}",
    "why_overdue": " (просрочено)",
    "why_waits_task": "задачу «{title}»",
    "why_waits_tranche": "оплату транша {number} до {due}",
    "why_waits_person": "действия менеджера",
    "why_cause_accepted": "заявку взял в работу менеджер {rest}",
    "why_loss_NO_MONEY": "нет денег",
    "why_loss_COMPETITOR": "выбрали конкурента",
    "why_loss_NOT_TARGET": "нецелевой клиент",
    "why_loss_NO_DECISION": "нет решения",
    "why_loss_TOO_LONG": "слишком долго",
    "why_loss_OTHER": "другое",
    "why_cause_rejected": "заявка отклонена: {rest}",
    "why_cause_lost": "сделка проиграна: {rest}",
    "why_cause_kp_agreed": "КП согласовано; комплект документов: {rest}",
    "why_cause_approval_rejected": "внутреннее согласование отклонено: {rest}",
    "why_cause_paid": "оплата получена",
    "why_cause_postpaid": "счёт подписан (постоплата)",
    "why_cause_closing_documents": "закрывающие документы подписаны и отправлены",
    "why_cause_person": "сделку перевели в Битрикс24",
    "why_cause_found": "сделка найдена в Битрикс24",
    "why_cause_automation": "автоматически",
    # Issue 14 item 7: the deal changes under the workflow (salesflow/workflows/deal_changes.py).
    "notify_deal_deleted": (
        "Сделка «{deal_title}» (№{deal_id}) удалена в Битрикс24: процесс по ней завершён,"
        " открытые задачи отложены."
    ),
    "notify_deal_moved_out": (
        "Сделка «{deal_title}» (№{deal_id}) перенесена из направления «Продажа»: процесс по ней"
        " завершён, открытые задачи отложены."
    ),
    "task_comment_deal_deleted": (
        "Сделка №{deal_id} удалена в Битрикс24 — задача отложена автоматически."
    ),
    "task_comment_deal_moved_out": (
        "Сделка №{deal_id} перенесена из направления «Продажа» — задача отложена автоматически."
    ),
    "notify_document_set_changed": (
        "Сумма сделки «{deal_title}» (№{deal_id}) изменилась: {amount}. Комплект документов"
        " теперь «{new}» вместо «{old}»{approval}."
    ),
    "notify_document_set_approval": "; внутреннее согласование проводится заново",
    "notify_currency_rate_missing": (
        "Сделка «{deal_title}» (№{deal_id}) в валюте {currency}: курс не настроен, комплект"
        " документов не определить. Укажите сумму в рублях или попросите администратора"
        " добавить курс (rules.currency_rates)."
    ),
    "notify_user_deactivated": (
        "Пользователь {user} деактивирован в Битрикс24: по сделке «{deal_title}» (№{deal_id})"
        " вам переданы: {work}."
    ),
    "handover_manager": "ответственность за сделку",
    "notify_reopen_refused": (
        "Сделка «{deal_title}» (№{deal_id}) закрыта ({stage}): возврат на стадию «{target}»"
        " не предусмотрен настройками, сделка возвращена в «{stage}». Для продолжения работы"
        " создайте новую сделку."
    ),
    # Issue 14 item 6: the client told of the work on the order (client_messages.py).
    "client_won_form_link": "Оставить отзыв: {form_url}",
    "client_order_logist_started": (
        "Уважаемый клиент! По вашему заказу №{deal_id} начата работа: {what}."
    ),
    "client_order_logist_done": (
        "Уважаемый клиент! По вашему заказу №{deal_id} выполнено: {what}."
    ),
    "client_order_process_done": (
        "Уважаемый клиент! По вашему заказу №{deal_id} завершён этап «{process}»."
    ),
    "client_order_delivery_term": (
        "Уважаемый клиент! Срок поставки по вашему заказу №{deal_id} изменён: {term}."
        " Ваш менеджер {manager_name}, {manager_phone}, {manager_email}"
    ),
}


CARD_TEMPLATES: dict[str, str] = {
    # ---- the deal card (salesflow/deal_card), formerly `[deal_card.templates]` ----
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
    "action_approval": "Согласование Счета/Договора",
    "action_approve": "Согласовать",
    "action_disapprove": "Отклонить",
    "field_approval_comment": "Комментарий для менеджера (обязателен при отклонении)",
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
    "actor_automatic": "автоматически",
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
    "input_comment_required_rejection": "при отклонении нужен комментарий для менеджера",
    "input_no_service": "выберите «Да» хотя бы для одного задания",
    "input_unknown_choice": "неизвестный вариант «{value}»",
    "input_unknown_action": "неизвестное действие",
    "input_invalid": "данные формы неверны ({details})",
    "deal_gone": "сделка уже закрыта",
}


# ---- the workflow's refusals (salesflow/workflows/refusals.py): `refusal_<code>` ----
# The parameters are the refusal's; `{stage}` is the stage's name (`stage_<code>` or the
# portal's own name). Shown by the deal card and the CLI.
REFUSAL_TEMPLATES: dict[str, str] = {
    "refusal_wrong_stage": "на стадии «{stage}» это действие недоступно",
    "refusal_already_decided": "заявка уже принята в работу или отклонена",
    "refusal_not_a_manager": "вы не в списке менеджеров по продажам (portal.users.managers)",
    "refusal_reason_required": "укажите причину отказа",
    "refusal_no_feedback_awaited": "обратная связь по КП сейчас не ожидается",
    "refusal_no_approval_running": "внутреннее согласование по сделке сейчас не идёт",
    "refusal_rejection_needs_comment": "для отклонения нужен комментарий для менеджера",
    "refusal_paid_in_future": "дата оплаты {paid_on} в будущем",
    "refusal_paid_too_early": "дата оплаты {paid_on} намного раньше начала сделки ({started})",
    "refusal_no_payment_control": "контроль оплат по сделке не ведётся",
    "refusal_schedule_set": "график платежей уже задан",
    "refusal_schedule_invalid": "график платежей неверен: {details}",
    "refusal_closed": "сделка уже закрыта («{stage}»)",
    "refusal_nothing_requested": "выберите хотя бы одно задание",
    "refusal_already_at": "сделка уже на стадии «{stage}»",
    "refusal_use_lose_deal": "для провала сделки укажите причину (действие «Сделка провалена»)",
    "refusal_already_moving": "сделка уже переходит на другую стадию",
    "refusal_already_losing": "сделка уже закрывается как проваленная",
    "refusal_other_needs_comment": "для причины «Другое» нужен комментарий",
    "refusal_required_fields": "не заполнены обязательные поля: {fields}",
    "refusal_schedule_no_tranches": "в графике нет платежей",
    "refusal_schedule_too_many": "не больше {max} платежей",
    "refusal_tranche_not_positive": "платёж {number}: процент {percent} не больше нуля",
    "refusal_tranche_before_start": "платёж {number}: дата {due} раньше начала сделки {start}",
    "refusal_schedule_repeated_dues": "повторяются даты: {dues}",
    "refusal_schedule_percent_sum": "сумма процентов {total}, а не 100",
    # `salesflow rules migrate` (issue 15): why a running deal cannot take the new rules
    "refusal_migrate_closed": "Сделка №{deal_id} закрыта («{stage}»): её правила не меняются.",
    "refusal_migrate_pipeline": (
        "Сделка №{deal_id} не относится к воронке новых правил (направление {category},"
        " в новых правилах {new_category})."
    ),
    "refusal_migrate_stage": (
        "В новых правилах нет стадии «{stage}», на которой стоит сделка №{deal_id}."
    ),
    "refusal_migrate_manager": (
        "Ответственный сделки №{deal_id} (пользователь {manager_id}) не входит в список"
        " менеджеров новых правил."
    ),
    "refusal_migrate_document_set": (
        "Сделка №{deal_id} уже на стадии «{stage}» с комплектом «{was_set}»; по новым правилам"
        " сумма {amount} ₽ требует комплект «{would_set}»."
    ),
    "refusal_migrate_approval": (
        "По сделке №{deal_id} идёт внутреннее согласование, а по новым правилам оно не нужно:"
        " завершите согласование, затем меняйте правила."
    ),
    # `amend_payment_schedule` (issue 14 item 2)
    "refusal_schedule_not_set": (
        "График оплаты по сделке №{deal_id} ещё не задан — задайте его, а не изменяйте."
    ),
    "refusal_schedule_all_paid": (
        "Все транши графика оплаты по сделке №{deal_id} уже оплачены — изменять нечего."
    ),
    "refusal_schedule_drops_paid": (
        "Транш {number} ({percent}% до {due}) по сделке №{deal_id} уже оплачен —"
        " новый график должен сохранить его с тем же процентом и сроком."
    ),
    "refusal_unknown": "процесс сделки отклонил действие ({details})",
    "refusal_code": "{text} (код: {code})",  # the CLI's line
}

# ---- history causes on the deal card's tab (salesflow/workflows/causes.py): `cause_<code>` ----
CAUSE_TEMPLATES: dict[str, str] = {
    "cause_found": "сделка найдена в Bitrix24",
    "cause_accepted": "заявка принята в работу (пользователь {user})",
    "cause_lead_rejected": "заявка отклонена: {reason}",
    "cause_moved_in_bitrix24": "стадия изменена в Bitrix24",
    "cause_moved_with_cli": "стадия изменена через CLI",
    "cause_automation": "автоматически",
    "cause_lost": "сделка провалена: {reason}",
    "cause_kp_feedback": "обратная связь по КП, раунд {round}: {answer}",
    "cause_kp_agreed": "КП согласовано; комплект документов: {document_set}",
    "cause_approval_rejected": "внутреннее согласование отклонено: {comment}",
    "cause_approval_approved": "внутреннее согласование пройдено",
    "cause_payment_received": "оплата получена",
    "cause_closing_documents": "закрывающие документы подписаны и отправлены",
    "cause_signed": "подписан документ: {kind}",
    "cause_signed_field": "подписан документ: {kind} (поле заполнено в Bitrix24)",
    "cause_process_started": "запущен процесс «{name}»",
    "cause_process_done": "процесс завершён: {kind}",
    "cause_task_completed": "задача {task_id} завершена в Bitrix24",
    "cause_move_refused": "переход на «{target}» отклонён: не заполнены {fields}",
    "cause_waiting_for_fields": "ожидаются поля {fields} для перехода на «{target}»",
    "cause_responsible_changed": "ответственный изменён в Bitrix24: {old} → {new}",
    "cause_kp_status_field": "«Статус КП» задан в Bitrix24, раунд {round}: {answer}",
    "cause_service_field": "в Bitrix24 запрошено задание: {service}",
    "cause_payment": "оплата {amount} от {paid_on} ({source})",
    "cause_payment_confirmed": "оплата {amount} подтверждена документом 1С {document}",
    "cause_payment_onec": "оплата {amount} от {paid_on} (документ 1С {document})",
    "cause_payment_posted_again": "оплата {amount} снова проведена в 1С ({document})",
    "cause_payment_known_from_onec": "оплата {amount} уже получена из 1С ({document})",
    "cause_payment_reversed": "оплата {amount} сторнирована: документ 1С {document} "
    "распроведён или удалён",
    "cause_schedule_set": "задан график платежей, траншей: {count}",
    "cause_schedule_amended": "график платежей изменён: {old} → {new}",
    "cause_payments_closed": "контроль оплат закрыт РОП: {comment}",
    "cause_payments_go_on": "контроль оплат продолжается: открыты транши {numbers}",
    "cause_postpayment": "постоплата: ждём подписей, а не оплаты",
    "cause_kp_loaded": "КП {number} загружено из 1С, строк: {lines}",
    "cause_reopened": "сделка открыта снова после «{final}» в Bitrix24: новый проход с «{target}»",
    "cause_reopen_refused": "возврат с «{final}» на «{target}» в Bitrix24 отклонён (настройка "
    "rules.reopen)",
    "cause_new_round": "сделка снова на первой стадии: ждём нового принятия заявки (раунд {round})",
    "cause_no_rate": "нет курса {currency}: комплект документов не выбрать",
    "cause_document_set_changed": "сумма {rub} ₽: комплект документов {old_set} → {new_set}",
    "cause_ended_not_found": "сделка не найдена в Bitrix24 (удалена): процесс завершён",
    "cause_ended_deleted": "сделка удалена в Bitrix24: процесс завершён",
    "cause_ended_moved_out": "сделка перенесена в другую воронку ({category}): процесс завершён",
    "cause_logist_failed": "задание логисту в 1С не создано: {error}",
    "cause_logist_done": "задание логисту в 1С {ref}: {executed}",
    "cause_logist_withdrawn": "задание логисту в 1С отозвано (сделка провалена)",
    "cause_rop_changed": "РОП изменён: пользователь {old} → пользователь {new}",
    "cause_user_deactivated": "пользователь {user} деактивирован в Bitrix24: его работа передана "
    "РОП {rop}",
    "cause_people_not_read": "сотрудники не прочитаны из Bitrix24, оставлены последние известные",
    # The values a cause's parameters take (`value_<param>_<value>`), shown where defined.
    "value_answer_agreed": "согласовано",
    "value_answer_not agreed": "не согласовано",
    "value_answer_not_agreed": "не согласовано",
    "value_source_manual": "вручную",
    "value_executed_True": "выполнено",
    "value_executed_False": "не выполнено",
    "value_source_1c": "1С",
    "value_kind_invoice": "Счет",
    "value_kind_contract": "Договор",
    "value_kind_act": "Акт",
    "value_kind_upd": "УПД",
    "value_kind_import_order": "Заказ Импорт",
    "value_kind_production": "Производство",
    "value_kind_purchasing": "Закупки",
    "value_document_set_invoice": "Счет",
    "value_document_set_contract_and_invoice": "Счет и Договор",
    "value_document_set_invoice_contract": "Счет и Договор (с порогом для счёта)",
    "value_service_engineers": "инженерам",
    "value_service_purchasing": "закупщикам",
    "value_service_logistics": "логистике",
    "value_service_production": "производству",
    "value_service_lawyer": "юристу (проверка контрагента)",
    "value_service_metrologist": "метрологу",
}

# Every template by name: what `[templates]` may replace (and config-check verifies).
ALL_TEMPLATES: dict[str, str] = {
    **DEFAULT_TEMPLATES,
    **CARD_TEMPLATES,
    **REFUSAL_TEMPLATES,
    **CAUSE_TEMPLATES,
}


def merged(overrides: Mapping[str, str]) -> dict[str, str]:
    """The workflow's templates (they travel in each deal's rules snapshot) with the configured
    replacements; the card's and the refusals' texts stay with the processes that show them."""
    return {**DEFAULT_TEMPLATES, **{k: v for k, v in overrides.items() if k in DEFAULT_TEMPLATES}}


def placeholders(template: str) -> set[str]:
    """The `{name}` placeholders of a template (ValueError when its braces are malformed)."""
    names = set()
    for _, field, _, _ in Formatter().parse(template):
        if field is not None:
            names.add(field.split(".")[0].split("[")[0])
    return names


def template_problems(overrides: Mapping[str, str], where: str = "templates") -> list[str]:
    """What is wrong with configured templates: an unknown name, malformed braces, or a
    placeholder the default does not offer (it would never be filled in)."""
    problems = []
    for name in sorted(overrides):
        default = ALL_TEMPLATES.get(name)
        if default is None:
            problems.append(f"{where}.{name}: unknown template name")
            continue
        try:
            used = placeholders(overrides[name])
        except ValueError as exc:
            problems.append(f"{where}.{name}: malformed placeholder ({exc})")
            continue
        extra = sorted(used - placeholders(default))
        if extra:
            offered = ", ".join(sorted(placeholders(default))) or "none"
            problems.append(
                f"{where}.{name}: unknown placeholder {{{extra[0]}}} (offered: {offered})"
            )
    return problems


class Templates:
    """`texts("name", **values)`: a template filled in (defaults with the configured
    replacements); a missing value leaves the template as it is, visible."""

    def __init__(self, *overrides: Mapping[str, str] | None) -> None:
        self.table = dict(ALL_TEMPLATES)
        for more in overrides:
            problems = template_problems(more or {})
            if problems:
                # imported here: this module stays plain data (models.py and the workflow
                # sandbox import it; settings pulls in the 1C client)
                from salesflow.config.settings import ConfigError

                raise ConfigError(problems[0])
            self.table.update(more or {})

    def __call__(self, name: str, /, **values: object) -> str:
        template = self.table[name]
        try:
            return template.format(**values)
        except (KeyError, IndexError, ValueError):
            return template
