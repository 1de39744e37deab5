"""Building requests from keyword arguments, shared by the blocking and asyncio clients."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from google.protobuf import json_format

from .types import CheckQuery, Record
from .v1 import authz_pb2 as pb

MigrateModeName = Literal["preview", "apply"]
Placeholder = Literal["qmark", "dollar", "percent"]


def query(org_id: str, user: str, action: str, module: str, **kw: Any) -> CheckQuery:
    """A CheckQuery; `record` may be a Record or a dict of its fields."""
    rec = kw.pop("record", None)
    if isinstance(rec, dict):
        rec = Record(**rec)
    for key in ("read_fields", "write_fields"):
        if key in kw:
            kw[key] = tuple(kw[key])
    return CheckQuery(org_id, user, action, module, record=rec or Record(), **kw)


def attribute(org_id: str, user: str, action: str, module: str, **kw: Any) -> pb.AttributeRequest:
    """Keyword arguments are AttributeRequest fields (record_id, decision_id, and any the
    API adds later)."""
    return pb.AttributeRequest(org_id=org_id, user=user, action=action, module=module, **kw)


def list_filter(org_id: str, user: str, module: str, action: str = "view", *,
                channel: str = "crm", placeholder: Placeholder = "qmark",
                sql_columns: Mapping[str, str] | None = None, **kw: Any) -> pb.ListFilterRequest:
    return pb.ListFilterRequest(
        org_id=org_id, user=user, module=module, action=action,
        channel=pb.CHANNEL_DIRECT if channel == "direct" else pb.CHANNEL_CRM,
        sql_placeholder=pb.SqlPlaceholder.Value(f"SQL_PLACEHOLDER_{placeholder.upper()}"),
        sql_columns=dict(sql_columns or {}), **kw)


def migrate(org_id: str, caller: str, mode: MigrateModeName, crm_user_ids: Iterable[str],
            request_key: str, **kw: Any) -> pb.MigrateRequest:
    """An apply always carries an idempotency key (made up when none is given), so that a
    retried apply returns the same job instead of starting a second one."""
    if mode == "apply" and not request_key:
        request_key = f"sdk-{uuid.uuid4()}"
    return pb.MigrateRequest(org_id=org_id, caller=caller,
                             mode=pb.MigrateMode.Value(f"MIGRATE_MODE_{mode.upper()}"),
                             crm_user_ids=list(crm_user_ids), request_key=request_key, **kw)


def directory(request: pb.ImportDirectoryRequest | Mapping[str, Any]) -> pb.ImportDirectoryRequest:
    """An ImportDirectoryRequest, or its JSON form as a dict ({"org_id": ..., "crm_users":
    [{"id": ..., "email": ..., "status": "CRM_USER_STATUS_ACTIVE"}], ...})."""
    if isinstance(request, pb.ImportDirectoryRequest):
        return request
    return json_format.ParseDict(dict(request), pb.ImportDirectoryRequest())
