"""User-facing texts (Russian, from the customer's specification) as configurable templates.

Placeholders use `str.format` names; a configured template replaces the default of the same name.
"""

from __future__ import annotations

DEFAULT_TEMPLATES: dict[str, str] = {
    # `salesflow rules migrate` refusals (issue 15): why a running deal cannot take new rules.
    "migrate_refused_closed": "Сделка №{deal_id} закрыта («{stage}»): её правила не меняются.",
    "migrate_refused_pipeline": (
        "Сделка №{deal_id} не относится к воронке новых правил (направление {category},"
        " в новых правилах {new_category})."
    ),
    "migrate_refused_stage": (
        "В новых правилах нет стадии «{stage}», на которой стоит сделка №{deal_id}."
    ),
    "migrate_refused_manager": (
        "Ответственный сделки №{deal_id} (пользователь {manager_id}) не входит в список"
        " менеджеров новых правил."
    ),
    "migrate_refused_document_set": (
        "Сделка №{deal_id} уже на стадии «{stage}» с комплектом «{was}»; по новым правилам"
        " сумма {amount} ₽ требует комплект «{would}»."
    ),
    "migrate_refused_approval": (
        "По сделке №{deal_id} идёт внутреннее согласование, а по новым правилам оно не нужно:"
        " завершите согласование, затем меняйте правила."
    ),
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
    # Refusals of `amend_payment_schedule` (issue 14 item 2), shown to the person who asked.
    "refuse_schedule_not_set": (
        "График оплаты по сделке №{deal_id} ещё не задан — задайте его, а не изменяйте."
    ),
    "refuse_schedule_all_paid": (
        "Все транши графика оплаты по сделке №{deal_id} уже оплачены — изменять нечего."
    ),
    "refuse_schedule_drops_paid": (
        "Транш {number} ({percent}% до {due}) по сделке №{deal_id} уже оплачен —"
        " новый график должен сохранить его с тем же процентом и сроком."
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


def merged(overrides: dict[str, str]) -> dict[str, str]:
    return {**DEFAULT_TEMPLATES, **overrides}
