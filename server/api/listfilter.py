"""ListFilter: the domain's record filter (authz.engine.listfilter) over gRPC.

Lists, reports and dashboards (first users: the Subscription Reports folder and the
Overview/Insights dashboards) need "which records may this user see", not one Check per
row. The domain already answers that as a JSON-able condition tree whose records are
exactly the ones per-record decisions allow; this module only validates the request,
renders the tree as SQL in the caller's placeholder style and column names, and ships
both. The tree goes out as google.protobuf.Struct (its documented JSON format) rather
than a typed proto tree so that every language reads it with its JSON tooling and the
format has one definition, the domain's.
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf import struct_pb2

from authz.engine.engine import Engine
from authz.engine.listfilter import FALSE, FIELDS, TRUE, Filter, record_filter, to_sql
from authz.engine.validate import validate
from authz.errors import InvalidArgument
from authz.v1 import authz_pb2 as pb

from . import convert

# A column is a plain or once-qualified SQL identifier: the caller's SQL is theirs, but a
# column mapping must never become a way to smuggle SQL text into a WHERE clause.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
_PLACEHOLDERS = (pb.SQL_PLACEHOLDER_UNSPECIFIED, pb.SQL_PLACEHOLDER_QMARK,
                 pb.SQL_PLACEHOLDER_DOLLAR, pb.SQL_PLACEHOLDER_PERCENT)


def list_filter(engine: Engine, msg: pb.ListFilterRequest) -> pb.ListFilterResponse:
    """Answer one ListFilter request (synchronous: runs in the server's thread pool)."""
    check = convert.check_request(pb.CheckRequest(
        org_id=msg.org_id, user=msg.user, module=msg.module, action=msg.action,
        channel=msg.channel, min_revision=msg.min_revision, product=msg.product))
    validate(check)  # same validation as Check: same mistakes, same messages
    if msg.sql_placeholder not in _PLACEHOLDERS:
        raise InvalidArgument("sql_placeholder", f"unknown value {msg.sql_placeholder}")
    columns = _columns(dict(msg.sql_columns))
    org = engine.policies.get(check.org_id)
    snap = engine.directory.snapshot(check.org_id, check.min_revision)
    tree = record_filter(org, snap, check.user, check.module, check.action,
                         channel=check.channel, product=check.product)
    where, params = to_sql(tree, columns)
    out = pb.ListFilterResponse(
        scope=_scope(tree), sql_where=render_placeholders(where, msg.sql_placeholder),
        policy_revision=org.revision, directory_revision=snap.revision, org_id=check.org_id)
    out.filter.update(tree)
    out.sql_params.extend(_value(p) for p in params)
    return out


def _columns(mapping: dict[str, str]) -> dict[str, str]:
    for key, column in mapping.items():
        if key not in FIELDS:
            raise InvalidArgument(f"sql_columns[{key}]", "not a record attribute; expected one "
                                  "of " + ", ".join(FIELDS))
        if not _IDENTIFIER.fullmatch(column):
            raise InvalidArgument(f"sql_columns[{key}]", f"'{column}' is not a SQL identifier "
                                  "(letters, digits, _; optionally table.column)")
    return mapping


def _scope(tree: Filter) -> pb.FilterScope.ValueType:
    if tree == TRUE:
        return pb.FILTER_SCOPE_ALL
    if tree == FALSE:
        return pb.FILTER_SCOPE_NONE
    return pb.FILTER_SCOPE_SOME


def render_placeholders(where: str, style: pb.SqlPlaceholder.ValueType) -> str:
    """Rewrite to_sql's "?" marks; safe because values never appear in the text."""
    if style == pb.SQL_PLACEHOLDER_PERCENT:
        return where.replace("?", "%s")
    if style == pb.SQL_PLACEHOLDER_DOLLAR:
        parts = where.split("?")
        return parts[0] + "".join(f"${i}{rest}" for i, rest in enumerate(parts[1:], start=1))
    return where


def _value(param: Any) -> struct_pb2.Value:
    v = struct_pb2.Value()
    if isinstance(param, str):
        v.string_value = param
    elif isinstance(param, bool):
        v.bool_value = param
    elif isinstance(param, int | float):
        v.number_value = float(param)
    else:  # pragma: no cover - to_sql only emits strings and numbers
        raise TypeError(f"unexpected SQL parameter {param!r}")
    return v
