"""Delivering outbox notices over SMTP, with retries and backoff, never twice.

The sender leases notices from the outbox, sends each in its own SMTP transaction and
marks it sent only once the server accepted it; a failure (server down, refused) puts the
notice back with exponential backoff. Each message carries a Message-ID derived from the
notice, so even the one unavoidable duplicate (a crash between the SMTP server's "250 OK"
and our mark) is recognisable as such by the receiving side.
"""

from __future__ import annotations

import logging
import os
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

from authz.store.outbox import Notice, Outbox

log = logging.getLogger("authz.mail")


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where notices go: env AUTHZ_SMTP_HOST, AUTHZ_SMTP_PORT, AUTHZ_SMTP_FROM."""

    host: str = "localhost"
    port: int = 25
    sender: str = "authz@localhost"
    timeout: float = 10.0

    @classmethod
    def from_env(cls) -> SmtpConfig | None:
        """None when no SMTP host is configured: notices wait in the outbox."""
        host = os.environ.get("AUTHZ_SMTP_HOST")
        if not host:
            return None
        return cls(host, int(os.environ.get("AUTHZ_SMTP_PORT", "25")),
                   os.environ.get("AUTHZ_SMTP_FROM", "authz@localhost"))


class SmtpSender:
    """Sends one notice per SMTP session (simple, and a failure affects one notice)."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def message(self, notice: Notice) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.config.sender
        msg["To"] = notice.recipient
        msg["Subject"] = notice.subject
        msg["Message-ID"] = notice.message_id
        msg["X-Authz-Notice"] = f"{notice.org_id}/{notice.crm_user_id}/{notice.kind}/{notice.version}"
        msg.set_content(notice.body)
        return msg

    def send(self, notice: Notice) -> None:
        c = self.config
        with smtplib.SMTP(c.host, c.port, timeout=c.timeout) as smtp:
            smtp.send_message(self.message(notice))


def deliver_due(box: Outbox, sender: SmtpSender, limit: int = 50) -> tuple[int, int]:
    """Send what is due; returns (sent, failed)."""
    sent = failed = 0
    for notice in box.claim(limit):
        try:
            sender.send(notice)
        except (OSError, smtplib.SMTPException) as exc:
            box.failed(notice, f"{type(exc).__name__}: {exc}")
            failed += 1
            log.warning("notice %d to %s not delivered (attempt %d): %s", notice.id, notice.recipient,
                        notice.attempts + 1, exc)
            continue
        box.sent(notice.id)
        sent += 1
    return sent, failed
