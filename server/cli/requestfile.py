"""`authz check --request FILE`: a Check question kept in a YAML or JSON file.

Long questions (a record with six attributes, a dozen fields) are easier to keep,
review and share as a file than as a command line. The file uses the CheckRequest field
names of the proto (the same JSON grpcurl sends), so a request copied from a log or a
grpcurl session works as is; flags given on the command line override the file.

    org_id: acme-eu            # or: org
    user: u-fiona
    action: create
    module: invoices
    record: {total: 20000, status: draft}
    write_fields: [discount]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from authz.errors import InvalidArgument
from authz.policy import yamlsrc
from authz.policy.errors import PolicyError
from authz.v1 import authz_pb2 as pb

from ..edge import doors

TOP = {"org_id": "org", "org": "org", "user": "user", "action": "action", "module": "module",
       "product": "product", "read_fields": "read_field", "write_fields": "write_field",
       "channel": "channel", "explain": "explain", "min_revision": "min_revision"}
RECORD = {"record_id", "customer_id", "owner", "total", "currency", "status", "approval_level",
          "created_by", "location"}
REQUIRED = ("org", "user", "action", "module")


class RequestFileError(Exception):
    """A request file that cannot be used; the message says what to change."""


_DEST_FIELD = {"org": "org_id", "read_field": "read_fields", "write_field": "write_fields"}


def read(path: Path) -> dict[str, Any]:
    """The file as argparse destinations (org, user, ..., record_id, total, ...)."""
    return _read(path)[0]


def _read(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The file's values by argparse destination, and where each was written (file:line)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise RequestFileError(f"{path}: {exc.strerror}") from None
    if path.suffix == ".json":
        try:
            json.loads(text)
        except ValueError as exc:
            line = getattr(exc, "lineno", 0)
            raise RequestFileError(f"{path}:{line}: not valid JSON: {exc}") from None
    try:
        src = yamlsrc.load(path)  # JSON is read as YAML too: the same line numbers
    except PolicyError as exc:
        raise RequestFileError(str(exc.problems[0])) from None
    data = src.data

    def at(*keys: str) -> str:
        loc = src.at(keys)
        return f"{path}:{loc.line}" if loc.line else str(path)

    if not isinstance(data, dict):
        raise RequestFileError(f"{at()}: expected a mapping of CheckRequest fields "
                               "(org_id, user, action, module, record, ...)")
    out: dict[str, Any] = {}
    where: dict[str, str] = {}
    try:
        for key, value in data.items():
            if key == "record":
                if not isinstance(value, dict):
                    raise RequestFileError(f"{at(key)}: record: expected a mapping of record "
                                           "attributes")
                for rkey, rvalue in value.items():
                    if rkey not in RECORD:
                        raise RequestFileError(f"{at(key, rkey)}: record.{rkey}: unknown record "
                                               "attribute; expected one of "
                                               + ", ".join(sorted(RECORD)))
                    where[rkey] = at(key, rkey)
                    out[rkey] = _record_value(rkey, rvalue)
            elif key in TOP:
                where[TOP[key]] = at(key)
                out[TOP[key]] = _top_value(at(key), key, value)
            else:
                raise RequestFileError(f"{at(key)}: {key}: unknown field; expected one of "
                                       + ", ".join(k for k in TOP if k != "org") + ", record")
    except InvalidArgument as exc:
        dest = exc.field.removeprefix("record.")
        raise RequestFileError(f"{where.get(dest, path)}: {exc}") from None
    return out, where


def _top_value(where: str, key: str, value: Any) -> Any:
    if key in ("read_fields", "write_fields"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RequestFileError(f"{where}: {key}: expected a list of field names")
        return value
    if key == "channel":
        value = str(value).lower().removeprefix("channel_")
        if value not in ("crm", "direct"):
            raise RequestFileError(f"{where}: channel: expected crm or direct")
        return value
    if key == "explain":
        if not isinstance(value, bool):
            raise RequestFileError(f"{where}: explain: expected true or false")
        return value
    if key == "min_revision":
        return doors.integer(value, key, 0, doors.INT64[1])
    return value if isinstance(value, str) else str(value)


def _record_value(key: str, value: Any) -> Any:
    if key == "total":
        return None if value is None else doors.number(value, f"record.{key}")
    if key == "approval_level":
        return doors.integer(value, f"record.{key}", 0, doors.INT32[1])
    return value if isinstance(value, str) else str(value)


def question(args: argparse.Namespace) -> pb.CheckRequest:
    """The CheckRequest `authz check` sends for these (merged) arguments."""
    req = pb.CheckRequest(org_id=args.org, user=args.user, action=args.action,
                          module=args.module, product=args.product,
                          read_fields=args.read_field, write_fields=args.write_field,
                          channel=pb.CHANNEL_DIRECT if args.channel == "direct" else pb.CHANNEL_CRM,
                          explain=bool(args.explain),
                          min_revision=doors.integer(args.min_revision, "min_revision", 0,
                                                     doors.INT64[1]))
    for name in ("record_id", "customer_id", "owner", "currency", "status", "created_by",
                 "location"):
        setattr(req.record, name, getattr(args, name))
    if args.total is not None:
        req.record.total.value = doors.number(args.total, "record.total")
    req.record.approval_level = doors.integer(args.approval_level, "record.approval_level",
                                              0, doors.INT32[1])
    return req


def merge(args: argparse.Namespace, defaults: argparse.Namespace) -> argparse.Namespace:
    """Fill args from --request: a flag left at its default takes the file's value. The
    result is then validated as the server validates a Check (server/edge/doors.py), naming
    the file and line (or the flag) of a value the server would refuse."""
    where: dict[str, str] = {}
    if args.request is not None:
        values, located = _read(args.request)
        for dest, value in values.items():
            if getattr(args, dest) == getattr(defaults, dest):
                setattr(args, dest, value)
                where[dest] = located[dest]
    missing = [f"--{name}" for name in REQUIRED if not getattr(args, name)]
    if missing:
        where_ = " (not in the flags nor in the request file)" if args.request else ""
        raise RequestFileError(
            f"missing {', '.join(missing)}{where_}. A question needs the organization, the "
            "CRM user, the action and the module, e.g.\n  authz check --org acme-eu --user "
            "u-sam --action view --module invoices\nor a file: authz check --request "
            "question.yaml (see `authz check --help`)")
    try:
        doors.question(question(args))
    except InvalidArgument as exc:
        field = exc.field.split("[", 1)[0]
        dest = next((d for d, f in _DEST_FIELD.items() if f == field),
                    field.removeprefix("record."))
        source = where.get(dest) or "--" + dest.replace("_", "-")
        raise RequestFileError(f"{source}: {exc}") from None
    return args
