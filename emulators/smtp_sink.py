"""A local SMTP server (aiosmtpd) that keeps what it receives: the accountant's mailbox in the
local stack and in end-to-end tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message as MessageHandler


class Mailbox(MessageHandler):
    """Collects messages; with `folder`, also writes each one as an .eml file."""

    def __init__(self, folder: Path | None = None) -> None:
        super().__init__()
        self.messages: list[Message] = []
        self.folder = folder

    def handle_message(self, message: Message) -> None:
        self.messages.append(message)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            name = f"{len(self.messages):04d}.eml"
            (self.folder / name).write_bytes(message.as_bytes())


@contextlib.contextmanager
def smtp_sink(port: int, host: str = "127.0.0.1", folder: Path | None = None) -> Iterator[Mailbox]:
    mailbox = Mailbox(folder)
    controller = Controller(mailbox, hostname=host, port=port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()
