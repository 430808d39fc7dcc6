"""E-mail over SMTP (R-SH-3: the signed documents to the accountant).

Once per key: the outbox remembers each key the SMTP server accepted, so a retry after that
sends nothing. SMTP itself cannot be exactly-once: a worker that dies after the server took the
message and before its 250 was recorded resends it on retry. Such a resend is counted in the
outbox (`mail_attempt`) and carries the same Message-ID (derived from the key) plus an
`X-Salesflow-Attempt` header, so mail systems that collapse duplicates by Message-ID show one
e-mail, and the integrator can see which ones went twice. The same holds for a 250 that comes
later than `smtp.timeout_seconds` (the server took the message, its answer was lost): the retry
resends with the same Message-ID — SMTP has nothing to look the key up in, so the settle window
of the Bitrix24 and 1C creates (`once.py`) cannot help here.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Callable
from email.message import EmailMessage

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from salesflow.activities.errors import refuse
from salesflow.config import redact
from salesflow.config.settings import SmtpSettings
from salesflow.store.outbox import count_attempt, mark_sent, was_sent
from salesflow.workflows.models import EmailRequest


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
        redact.register(smtp.password)
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
        loop = asyncio.get_running_loop()

        def counted() -> None:
            """Called once the server is ready to take the message."""
            attempt = asyncio.run_coroutine_threadsafe(
                count_attempt(self.engine, req.key), loop
            ).result(timeout=30)
            if attempt > 1:
                activity.logger.warning(
                    "e-mail %s: handed to SMTP before without a recorded answer; sending it "
                    "again (attempt %d, same Message-ID)",
                    req.key,
                    attempt,
                )
                message["X-Salesflow-Attempt"] = str(attempt)

        await asyncio.to_thread(self._deliver, message, counted)
        await mark_sent(self.engine, req.key, req.to, req.subject)

    def _deliver(self, message: EmailMessage, ready: Callable[[], None]) -> None:
        with smtplib.SMTP(
            self.smtp.host, self.smtp.port, timeout=self.smtp.timeout_seconds
        ) as client:
            if self.smtp.starttls:
                client.starttls()
            if self.smtp.user:
                client.login(self.smtp.user, self.smtp.password)
            ready()
            client.send_message(message)
