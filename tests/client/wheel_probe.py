"""Run by test_wheel.py with the fresh venv's python (authz-client installed alone):
every SDK call against a real server; prints one JSON object of what it saw."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys

import authz_client
from authz_client import AsyncAuthzClient, AuthzClient, AuthzRpcError, Record, query


def main(address: str) -> None:
    out: dict[str, object] = {
        "version": authz_client.__version__,
        "absent": [m for m in ("sqlalchemy", "casbin", "alembic", "prometheus_client", "yaml",
                               "grpc_status", "authz", "authz_server")
                   if importlib.util.find_spec(m) is not None],
        "deadline": authz_client.DEFAULT_DEADLINE,
    }
    with AuthzClient(address) as c:
        r = c.check("acme-eu", "u-sam", "view", "invoices")
        out["check"] = [r.allowed, r.reason, r.identity.books_user_id]
        many = c.check_many([query("acme-eu", "u-sam", "view", "invoices"),
                             query("acme-eu", "u-sam", "juggle", "invoices")])
        out["check_many"] = [type(x).__name__ for x in many]
        made = c.check("acme-eu", "u-sam", "create", "invoices",
                       record=Record(total=500.0))  # its approval rule reads the total
        a = c.attribute("acme-eu", "u-sam", "create", "invoices", decision_id=made.decision_id)
        out["attribute"] = [a.mode, a.act_as, a.decision_id == made.decision_id]
        f = c.list_filter("acme-eu", "u-sam", "invoices")
        out["list_filter"] = [f.scope, f.from_server, bool(f.sql_where)]
        rev = c.import_directory({"org_id": "acme-eu", "crm_users": [
            {"id": "u-wheel", "email": "wheel@acme.example", "name": "Wheel Probe",
             "status": "CRM_USER_STATUS_ACTIVE"}]})
        out["import_directory"] = rev > 0
        m = c.migrate("acme-eu", "u-anna", "preview")
        out["migrate"] = [m.quota >= 0, m.directory_revision >= rev]
        try:
            c.check("acme-eu", "u-sam", "view", "nope")
        except AuthzRpcError as exc:
            out["error"] = [exc.code.name, [v.field for v in exc.violations]]

    async def concurrent() -> list[object]:
        async with AsyncAuthzClient(address) as ac:
            results = await asyncio.gather(*(ac.check("acme-eu", "u-sam", "view", "invoices")
                                             for _ in range(20)))
            return [all(x.allowed for x in results), ac.coalesce_stats.batches]

    out["async"] = asyncio.run(concurrent())
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
