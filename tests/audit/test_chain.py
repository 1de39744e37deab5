"""The hash chain detects changed, removed and reordered entries."""

from __future__ import annotations

import dataclasses

from authz.audit.chain import GENESIS, AuditEntry, seal, verify


def chain(n: int) -> list[AuditEntry]:
    out: list[AuditEntry] = []
    prev = GENESIS
    for i in range(1, n + 1):
        e = seal(AuditEntry("acme-eu", i, "check", f"2026-11-24T10:00:0{i}Z", f"d{i}", "u-sam",
                            "finance_user", "b-sam", "create", "invoices", f"r{i}", True,
                            "granted", "unified", "rev1", 3, "crm-web"), prev)
        out.append(e)
        prev = e.hash
    return out


def test_an_intact_chain_verifies() -> None:
    entries = chain(5)
    assert verify(entries, head=(5, entries[-1].hash), org_id="acme-eu") == []


def test_a_changed_entry_is_named() -> None:
    entries = chain(5)
    entries[2] = dataclasses.replace(entries[2], allowed=False)
    (brk,) = verify(entries)
    assert brk.seq == 3 and "content changed" in brk.problem


def test_a_removed_entry_is_named() -> None:
    entries = chain(5)
    del entries[1]
    problems = verify(entries)
    assert {b.seq for b in problems} == {2, 3}
    assert any("jumps from 1 to 3" in b.problem for b in problems)


def test_removing_the_newest_entries_is_caught_by_the_head() -> None:
    entries = chain(5)
    head = (5, entries[-1].hash)
    (brk,) = verify(entries[:3], head=head, org_id="acme-eu")
    assert "ends at entry 3" in brk.problem


def test_a_rehashed_forgery_still_breaks_the_next_link() -> None:
    entries = chain(4)
    forged = seal(dataclasses.replace(entries[1], allowed=False), entries[0].hash)
    entries[1] = forged
    (brk,) = verify(entries)
    assert brk.seq == 3 and "does not link" in brk.problem
