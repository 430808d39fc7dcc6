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
import itertools
import mimetypes
import smtplib
from collections.abc import Callable
from email.message import EmailMessage

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from salesflow.activities.errors import refuse, remote_errors
from salesflow.config import redact
from salesflow.config.settings import SmtpSettings
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.store.outbox import count_attempt, mark_sent, was_sent
from salesflow.workflows.models import EmailRequest


def build_message(
    req: EmailRequest, sender: str, attachments: list[tuple[str, bytes]] | None = None
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(req.to)
    message["Subject"] = req.subject
    message["Message-ID"] = f"<{req.key.replace(':', '.')}@salesflow>"
    message.set_content(req.body)
    for name, content in attachments or []:
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        maintype, _, subtype = kind.partition("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return message


def uf_camel(name: str) -> str:
    """A deal user field as crm.item.get names it: `UF_CRM_SIGNED_ACT` → `ufCrmSignedAct`,
    `UF_CRM_44_1638795037` → `ufCrm44_1638795037` (bitrix24.md §5, crm/universal)."""
    parts = name.lower().split("_")
    out = parts[0]
    for previous, part in itertools.pairwise(parts):
        out += "_" + part if part.isdigit() and previous.isdigit() else part.capitalize()
    return out


async def deal_files(
    bitrix24: Bitrix24Client, deal_id: int, fields: list[str]
) -> list[tuple[str, bytes]]:
    """The files in the deal's `file` fields `fields`: crm.item.get {entityTypeId: 2} answers
    each as `{id, url, urlMachine}` and `urlMachine` is downloaded with a GET (b24restdocs
    api-reference/files/index.md, how-to-upload-files.md "Response Content"; crm.deal.get's
    `downloadUrl` is a show_file.php page for a browser session, b24-rest-docs issue #94).
    An empty field gives nothing."""
    with remote_errors():
        found = await bitrix24.call("crm.item.get", {"entityTypeId": 2, "id": deal_id})
        item = found.get("item") or {}
        files: list[tuple[str, bytes]] = []
        for field in fields:
            value = item.get(uf_camel(field))
            for entry in value if isinstance(value, list) else [value]:
                if isinstance(entry, dict) and entry.get("urlMachine"):
                    name, content = await bitrix24.download(str(entry["urlMachine"]))
                    files.append((name or f"{field.lower()}-{entry.get('id')}", content))
    return files


class MailActivities:
    def __init__(
        self, smtp: SmtpSettings, engine: AsyncEngine, bitrix24: Bitrix24Client | None = None
    ) -> None:
        redact.register(smtp.password)
        self.smtp = smtp
        self.engine = engine
        self.bitrix24 = bitrix24  # the deal's signed files (R-SH-3 attachments)

    def all(self) -> list[object]:
        return [self.send_email]

    @activity.defn(name="send_email")
    async def send_email(self, req: EmailRequest) -> None:
        if not req.to or not all("@" in address for address in req.to):
            raise refuse(f"bad recipient list {req.to}", "BadRecipient")
        if await was_sent(self.engine, req.key):
            return
        attachments: list[tuple[str, bytes]] = []
        if req.attach_fields:
            if self.bitrix24 is None:
                raise refuse("no Bitrix24 client to read the deal's files", "NoBitrix24Client")
            attachments = await deal_files(self.bitrix24, req.deal_id, req.attach_fields)
        message = build_message(req, self.smtp.sender, attachments)
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
