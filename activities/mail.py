"""E-mail over SMTP (R-SH-3: the signed documents to the accountant).

Exactly once: the outbox table remembers each key that the SMTP server accepted, and the
Message-ID is derived from the key, so a retry after a lost answer sends nothing new.
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.errors import refuse
from config.settings import SmtpSettings
from store.outbox import mark_sent, was_sent
from workflows.models import EmailRequest


def build_message(req: EmailRequest, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(req.to)
    message["Subject"] = req.subject
    message["Message-ID"] = f"<{req.key.replace(':', '.')}@salesflow>"
    message.set_content(req.body)
    return message


class MailActivities:
    def __init__(self, smtp: SmtpSettings, engine: AsyncEngine) -> None:
        self.smtp = smtp
        self.engine = engine

    def all(self) -> list[object]:
        return [self.send_email]

    @activity.defn(name="send_email")
    async def send_email(self, req: EmailRequest) -> None:
        if not req.to or not all("@" in address for address in req.to):
            raise refuse(f"bad recipient list {req.to}", "BadRecipient")
        if await was_sent(self.engine, req.key):
            return
        message = build_message(req, self.smtp.sender)
        await asyncio.to_thread(self._deliver, message)
        await mark_sent(self.engine, req.key, req.to, req.subject)

    def _deliver(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=30) as client:
            if self.smtp.starttls:
                client.starttls()
            if self.smtp.user:
                client.login(self.smtp.user, self.smtp.password)
            client.send_message(message)
