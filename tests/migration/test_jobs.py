"""Preview, apply, jobs, quota and bad input, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from authz.errors import InvalidArgument, NotFound, PermissionDenied
from authz.migration.runner import run_job
from authz.migration.service import MigrationStore
from authz.store import Store
from authz.store.outbox import Outbox

from .conftest import ORG, settings, users


def test_preview_lists_common_candidates_excluded_and_slots(ms: MigrationStore) -> None:
    p = ms.preview(ORG, "admin")
    assert [c.crm_user_id for c in p.candidates[:2]] == ["u0003", "u0001"]  # most active first
    reasons = {e.crm_user_id: str(e.reason) for e in p.excluded}
    assert reasons == {"bob": "already_finance_user", "olga": "crm_user_disabled", "nomail": "no_email"}
    assert [(c.crm_user_id, c.roles) for c in p.common] == [("bob", ("books:staff",))]
    assert p.slots_left == 1000


def test_only_an_admin_may_preview_or_apply(ms: MigrationStore) -> None:
    for caller in ("u0001", "nobody", ""):
        with pytest.raises(PermissionDenied):
            ms.preview(ORG, caller)
        with pytest.raises(PermissionDenied):
            ms.apply(ORG, caller, ["u0001"], "k")
    assert ms.unfinished() == []


def test_apply_runs_a_job_with_per_user_results_and_a_revision(ms: MigrationStore, seeded: Store) -> None:
    before = seeded.revision(ORG)
    job = ms.apply(ORG, "admin", ["u0001", "bob", "olga", "u0002"], "req-1")
    assert job.state == "pending" and job.rejected == 2
    job = run_job(ms, ORG, job.job_id)
    assert (job.state, job.done, job.rejected) == ("done", 2, 2)
    by_user = {i.crm_user_id: i for i in job.items}
    assert by_user["bob"].reason == "already_finance_user"  # Books users never become integration users
    assert by_user["olga"].reason == "crm_user_disabled"
    assert by_user["u0001"].integration_user_id == "iu-u0001"
    assert job.revision > before
    snap = seeded.snapshot(ORG, job.revision)
    assert {"u0001", "u0002"} <= set(snap.integration_users)
    # Idempotent by request key: the same job, nothing done twice.
    again = ms.apply(ORG, "admin", ["u0001", "bob", "olga", "u0002"], "req-1")
    assert again.job_id == job.job_id and again.done == 2
    with pytest.raises(InvalidArgument, match="another selection"):
        ms.apply(ORG, "admin", ["u0005"], "req-1")


def test_bad_input_is_refused_with_nothing_written(ms: MigrationStore, seeded: Store) -> None:
    rev = seeded.revision(ORG)
    with pytest.raises(InvalidArgument, match=r"no such CRM user.*ghost"):
        ms.apply(ORG, "admin", ["u0001", "ghost"], "a")
    with pytest.raises(InvalidArgument, match="more than once: u0001"):
        ms.apply(ORG, "admin", ["u0001", "u0002", "u0001"], "b")
    with pytest.raises(NotFound):
        ms.job(ORG, "no-such-job")
    small = MigrationStore(seeded, settings(quota=3), usage=lambda o: {})
    with pytest.raises(InvalidArgument, match="only 3 of 3 integration-user slots remain"):
        small.apply(ORG, "admin", ["u0001", "u0002", "u0003", "u0004"], "c")
    assert ms.unfinished() == [] and seeded.revision(ORG) == rev
    assert len(seeded.snapshot(ORG).integration_users) == 0


def test_concurrent_applies_across_replicas_end_exactly_at_the_quota(open_: object, seeded: Store) -> None:
    quota = 20
    replicas = [MigrationStore(open_(), settings(quota=quota), usage=lambda o: {})  # type: ignore[operator]
                for _ in range(4)]
    accepted: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def request(n: int) -> None:
        ms = replicas[n % 4]
        start.wait()
        try:
            job = ms.apply(ORG, "admin", [f"u{n * 4 + k:04d}" for k in range(4)], f"conc-{n}")
            run_job(ms, ORG, job.job_id, batch_size=1)
            with lock:
                accepted.append(job.job_id)
        except InvalidArgument as exc:
            with lock:
                refused.append(str(exc))

    threads = [threading.Thread(target=request, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) == 5 and len(refused) == 3  # 8 x 4 users against 20 slots
    assert all("slots remain" in r for r in refused)
    assert len(seeded.snapshot(ORG, seeded.revision(ORG)).integration_users) == quota


def test_runtime_quota_check_rejects_per_user_and_raise_is_audited(ms: MigrationStore,
                                                                    seeded: Store) -> None:
    small = MigrationStore(seeded, settings(quota=2), usage=lambda o: {})
    job = run_job(small, ORG, small.apply(ORG, "admin", ["u0001", "u0002"], "q1").job_id)
    assert job.done == 2
    with pytest.raises(InvalidArgument, match="only 0 of 2"):
        small.apply(ORG, "admin", ["u0003"], "q2")
    with pytest.raises(InvalidArgument, match="reason"):
        small.set_quota(ORG, 5, "ops-jane", "")
    with pytest.raises(InvalidArgument, match="cannot go below"):
        small.set_quota(ORG, 1, "ops-jane", "ticket 7")
    assert small.set_quota(ORG, 3, "ops-jane", "ticket 7") == 2
    assert run_job(small, ORG, small.apply(ORG, "admin", ["u0003"], "q3").job_id).done == 1
    (h,) = small.quota_history(ORG)
    assert (h["operator"], h["old_quota"], h["new_quota"], h["reason"]) == ("ops-jane", 2, 3, "ticket 7")


def test_an_interrupted_job_resumes_with_no_duplicate_and_no_lost_user(ms: MigrationStore,
                                                                         seeded: Store) -> None:
    ids = [u.id for u in users(40)]
    job = ms.apply(ORG, "admin", ids, "big")
    stop = threading.Event()
    seen: list[int] = []

    def halt(j: object) -> None:
        seen.append(1)
        if len(seen) == 3:
            stop.set()  # like a crash between batches: 3 batches committed
    partial = run_job(ms, ORG, job.job_id, batch_size=5, progress=halt, stop=stop)  # type: ignore[arg-type]
    assert partial.state == "running" and partial.done == 15
    assert ms.unfinished() == [(ORG, job.job_id)]
    # Two runners resume at once (a restarted server and a CLI): each user exactly once.
    runners = [threading.Thread(target=run_job, args=(ms, ORG, job.job_id), kwargs={"batch_size": 4})
               for _ in range(2)]
    for t in runners:
        t.start()
    for t in runners:
        t.join()
    final = ms.job(ORG, job.job_id)
    assert (final.state, final.done, final.rejected) == ("done", 40, 0)
    assert set(seeded.snapshot(ORG, final.revision).integration_users) == set(ids)
    assert Outbox(seeded.engine).pending() == 40  # one notice per user


def test_migrating_1000_users_to_durable_completion(open_: object, db_url: str) -> None:
    store: Store = open_()  # type: ignore[operator]
    store.upgrade()
    from .conftest import ADMIN
    store.import_directory(ORG, [ADMIN, *users(1000)], [])
    ms = MigrationStore(store, settings(), usage=lambda o: {})
    t0 = time.perf_counter()
    job = run_job(ms, ORG, ms.apply(ORG, "admin", [u.id for u in users(1000)], "k").job_id)
    elapsed = time.perf_counter() - t0
    assert job.done == 1000
    print(f"\n1000 users migrated on {db_url.split(':')[0]} in {elapsed:.3f} s")
