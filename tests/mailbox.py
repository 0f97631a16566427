"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps every message it accepts, and luigi.cfg's own
commented mail block, uncommented and pointed at it (docs/alerts.md)."""

from __future__ import annotations

import contextlib
import email
import email.policy
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller

from tests.conftest import REPO_ROOT
from tests.test_scheduler import _free_port

RECEIVER = "nightly-alerts@example.org"


@dataclass(frozen=True)
class Mail:
    recipients: list[str]  # the SMTP envelope's RCPT TO
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        return self.message.get_body(preferencelist=("plain",)).get_content()


class Mailbox:
    """aiosmtpd's handler: every accepted message, in order. Delivery is synchronous for the sender
    (smtplib returns after the server's 250), so once a sending process has exited, its mail is here."""

    def __init__(self):
        self._mails: list[Mail] = []
        self._lock = threading.Lock()
        self.port = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        with self._lock:
            self._mails.append(Mail(list(envelope.rcpt_tos), message))
        return "250 OK"

    @property
    def mails(self) -> list[Mail]:
        with self._lock:
            return list(self._mails)


@contextlib.contextmanager
def serving_mailbox() -> Iterator[Mailbox]:
    """A Mailbox behind aiosmtpd on a free 127.0.0.1 port, for the block's duration."""
    box = Mailbox()
    box.port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


def mail_settings(port: int) -> str:
    """luigi.cfg's commented [email]/[smtp]/[batch_email] block, uncommented, for RECEIVER via 127.0.0.1:port."""
    lines = (REPO_ROOT / "luigi.cfg").read_text().splitlines()
    start = lines.index("# [email]")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line.removeprefix("# "))
    text = "\n".join(block) + "\n"
    for shipped, ours in (
        ("receiver = you@example.org", f"receiver = {RECEIVER}"),
        ("host = localhost", "host = 127.0.0.1"),
        ("port = 25", f"port = {port}"),
    ):
        assert shipped in text, f"luigi.cfg's mail block no longer says {shipped!r}"
        text = text.replace(shipped, ours)
    return text


def site_cfg(path: Path, settings, mail_port: int | None = None, base: str = "") -> Path:
    """`base` plus the [pipeline] section of the running tests' luigi config (`settings`), plus the mail
    block when `mail_port` is given: a LUIGI_CONFIG_PATH file for a command-line run."""
    pipeline = "".join(
        f"{key} = {settings.get('pipeline', key)}\n" for key in ("artifacts_root", "sources", "checksums_file")
    )
    mail = mail_settings(mail_port) if mail_port is not None else ""
    path.write_text(f"{base}\n[pipeline]\n{pipeline}intra_op_threads = 1\n\n{mail}")
    return path
