"""The e-mail activity against a real SMTP server (aiosmtpd): sent once per key (R-SH-3)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from emulators.asgi_server import free_port, serve
from emulators.bitrix24.app import create_app
from salesflow.activities.mail import MailActivities
from salesflow.config.settings import SmtpSettings
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.store.db import init_db, make_engine
from salesflow.store.outbox import attempts_of, count_attempt
from salesflow.workflows.models import EmailRequest


class Inbox(Message):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list = []

    def handle_message(self, message) -> None:  # type: ignore[no-untyped-def]
        self.messages.append(message)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def test_r_sh_3_documents_mail_sent_once_per_key(smtp_server, tmp_path: Path) -> None:
    inbox, port = smtp_server
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    await init_db(engine)
    acts = MailActivities(SmtpSettings(host="127.0.0.1", port=port), engine)
    req = EmailRequest(
        key="deal:42:sh:mail_accountant",
        to=["buh@example.ru"],
        subject="Подписанные документы по сделке №42",
        body="— УПД №17 от 01.12.2026",
    )
    env = ActivityEnvironment()
    await env.run(acts.send_email, req)
    await env.run(acts.send_email, req)
    await engine.dispose()
    assert len(inbox.messages) == 1
    mail = inbox.messages[0]
    assert mail["To"] == "buh@example.ru"
    assert mail["Message-ID"] == "<deal.42.sh.mail_accountant@salesflow>"
    assert "УПД №17" in mail.get_payload(decode=True).decode("utf-8")


async def test_bad_recipient_is_refused_permanently(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    await init_db(engine)
    acts = MailActivities(SmtpSettings(), engine)
    req = EmailRequest(key="k", to=["nobody"], subject="s", body="b")
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(acts.send_email, req)
    await engine.dispose()
    assert err.value.non_retryable


async def test_r_sh_3_resend_after_a_lost_answer_is_counted_and_keeps_the_message_id(
    smtp_server, tmp_path: Path
) -> None:
    """The server took the e-mail but its 250 never reached the outbox (the worker died): the
    retry sends it again — SMTP cannot know — with the same Message-ID, and the outbox says so."""
    inbox, port = smtp_server
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    await init_db(engine)
    acts = MailActivities(SmtpSettings(host="127.0.0.1", port=port), engine)
    req = EmailRequest(
        key="deal:43:sh:mail_accountant", to=["buh@example.ru"], subject="s", body="b"
    )
    await count_attempt(engine, req.key)  # the attempt that died after the server took it
    await ActivityEnvironment().run(acts.send_email, req)
    await ActivityEnvironment().run(acts.send_email, req)
    attempts = await attempts_of(engine, req.key)
    await engine.dispose()
    (mail,) = inbox.messages
    assert mail["Message-ID"] == "<deal.43.sh.mail_accountant@salesflow>"
    assert mail["X-Salesflow-Attempt"] == "2" and attempts == 2


async def test_smtp_down_is_retried_without_counting_an_attempt(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    await init_db(engine)
    acts = MailActivities(SmtpSettings(host="127.0.0.1", port=free_port()), engine)
    req = EmailRequest(
        key="deal:44:sh:mail_accountant", to=["buh@example.ru"], subject="s", body="b"
    )
    with pytest.raises(OSError):
        await ActivityEnvironment().run(acts.send_email, req)
    attempts = await attempts_of(engine, req.key)
    await engine.dispose()
    assert attempts == 0


class LateAnswer(Inbox):
    """Takes the message, then answers its 250 too late for the client."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        answer = await super().handle_DATA(server, session, envelope)
        if len(self.messages) == 1:
            await asyncio.sleep(self.delay)
        return answer


async def test_r_sh_3_late_250_is_an_unknown_outcome_resent_with_the_same_message_id(
    tmp_path: Path,
) -> None:
    """Issue 11: the server took the e-mail but answered after the client gave up. SMTP has no
    lookup, so the retry sends it again — as the same message (Message-ID), counted."""
    inbox = LateAnswer(delay=1.5)
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    try:
        await init_db(engine)
        smtp = SmtpSettings(host="127.0.0.1", port=port, timeout_seconds=0.5)
        acts = MailActivities(smtp, engine)
        req = EmailRequest(
            key="deal:45:sh:mail_accountant", to=["buh@example.ru"], subject="s", body="b"
        )
        with pytest.raises(OSError):  # the 250 did not come in time
            await ActivityEnvironment().run(acts.send_email, req)
        await ActivityEnvironment().run(acts.send_email, req)  # Temporal's retry
        await ActivityEnvironment().run(acts.send_email, req)  # a replay: the outbox knows
        attempts = await attempts_of(engine, req.key)
    finally:
        await engine.dispose()
        controller.stop()
    first, again = inbox.messages
    assert first["Message-ID"] == again["Message-ID"] == "<deal.45.sh.mail_accountant@salesflow>"
    assert again["X-Salesflow-Attempt"] == "2" and attempts == 2


async def test_r_sh_3_signed_act_and_upd_files_attached(smtp_server, tmp_path: Path) -> None:
    """The signed files from the deal's `file` fields (crm.item.get urlMachine) are attached;
    an empty field attaches nothing."""
    inbox, port = smtp_server
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    await init_db(engine)
    async with serve(create_app(rate_per_second=None)) as server:
        client = Bitrix24Client(f"{server.url}/rest/1/devsecret/", rate_per_second=50, burst=50)
        try:
            deal_id = int(
                await client.call(
                    "crm.deal.add",
                    {"fields": {"TITLE": "Поставка", "CATEGORY_ID": 1, "STAGE_ID": "C1:NEW"}},
                )
            )
            act = base64.b64encode(b"%PDF-1.4 act").decode()
            await client.call(
                "crm.deal.update",
                {"id": deal_id, "fields": {"UF_CRM_SIGNED_ACT": {"fileData": ["Акт.pdf", act]}}},
            )
            acts = MailActivities(SmtpSettings(host="127.0.0.1", port=port), engine, client)
            req = EmailRequest(
                key=f"deal:{deal_id}:sh:mail_accountant",
                to=["buh@example.ru"],
                subject="Подписанные документы",
                body="— Акт: подписан",
                deal_id=deal_id,
                attach_fields=["UF_CRM_SIGNED_ACT", "UF_CRM_SIGNED_UPD"],
            )
            await ActivityEnvironment().run(acts.send_email, req)
        finally:
            await client.aclose()
    await engine.dispose()
    (mail,) = inbox.messages
    parts = [p for p in mail.walk() if p.get_filename()]
    assert [p.get_filename() for p in parts] == ["Акт.pdf"]
    assert parts[0].get_payload(decode=True) == b"%PDF-1.4 act"
    assert parts[0].get_content_type() == "application/pdf"
