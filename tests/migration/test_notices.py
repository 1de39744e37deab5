"""Notices through a real SMTP server (aiosmtpd): once per user, retried when SMTP is down."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller

from authz.mail import SmtpConfig, SmtpSender, deliver_due
from authz.migration.runner import run_job
from authz.migration.service import MigrationStore
from authz.store import Store
from authz.store.outbox import Outbox, notify_permission_set

from .conftest import ORG, Inbox, settings


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, Inbox]]:
    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=_port())
    yield ctl, inbox
    if getattr(ctl, "_thread", None) is not None:
        ctl.stop()


def _drain(box: Outbox, sender: SmtpSender) -> None:
    while sum(deliver_due(box, sender)):
        pass


def test_every_migrated_user_gets_exactly_one_mail_after_smtp_recovers(
        ms: MigrationStore, seeded: Store, smtp: tuple[Controller, Inbox]) -> None:
    ctl, inbox = smtp
    box = Outbox(seeded.engine, base_delay=0.0)  # retry at once: the test needs no waiting
    sender = SmtpSender(SmtpConfig("127.0.0.1", ctl.port, timeout=2))
    ids = [f"u{i:04d}" for i in range(10)]
    run_job(ms, ORG, ms.apply(ORG, "admin", ids, "mail").job_id)
    assert deliver_due(box, sender) == (0, 10)  # SMTP down: nothing lost, all back off
    assert box.pending() == 10
    ctl.start()
    _drain(box, sender)
    _drain(box, sender)  # a second sender pass finds nothing left to send
    assert sorted(inbox.notices()) == sorted(f"{ORG}/{u}/migrated/2" for u in ids)
    assert box.pending() == 0
    # A retried apply (same key) or a re-run of the job enqueues nothing new.
    run_job(ms, ORG, ms.apply(ORG, "admin", ids, "mail").job_id)
    _drain(box, sender)
    assert len(inbox.messages) == 10
    msg = inbox.messages[0]
    assert msg["Message-ID"].endswith("@authz.invalid>") and "integration user" in msg.get_payload()


def test_a_new_permission_set_version_tells_each_migrated_user_once(
        ms: MigrationStore, seeded: Store, smtp: tuple[Controller, Inbox]) -> None:
    ctl, inbox = smtp
    ctl.start()
    box = Outbox(seeded.engine)
    sender = SmtpSender(SmtpConfig("127.0.0.1", ctl.port, timeout=2))
    run_job(ms, ORG, ms.apply(ORG, "admin", ["u0001", "u0002"], "v").job_id)
    assert notify_permission_set(seeded.engine, ORG, 2) == 0  # told at migration
    assert notify_permission_set(seeded.engine, ORG, 3) == 2
    assert notify_permission_set(seeded.engine, ORG, 3) == 0  # every replica may call it
    _drain(box, sender)
    assert sorted(inbox.notices()) == [f"{ORG}/u0001/migrated/2", f"{ORG}/u0001/permission_set/3",
                                       f"{ORG}/u0002/migrated/2", f"{ORG}/u0002/permission_set/3"]
    # Users migrated after the bump are told about the version they got, once.
    v3 = MigrationStore(seeded, settings(version=3), usage=lambda o: {})
    run_job(v3, ORG, v3.apply(ORG, "admin", ["u0003"], "v3").job_id)
    assert notify_permission_set(seeded.engine, ORG, 3) == 0
    _drain(box, sender)
    assert inbox.notices()[-1] == f"{ORG}/u0003/migrated/3" and len(inbox.messages) == 5
