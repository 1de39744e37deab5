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

import yaml

TOP = {"org_id": "org", "org": "org", "user": "user", "action": "action", "module": "module",
       "product": "product", "read_fields": "read_field", "write_fields": "write_field",
       "channel": "channel", "explain": "explain", "min_revision": "min_revision"}
RECORD = {"record_id", "customer_id", "owner", "total", "currency", "status", "approval_level",
          "created_by", "location"}
REQUIRED = ("org", "user", "action", "module")


class RequestFileError(Exception):
    """A request file that cannot be used; the message says what to change."""


def read(path: Path) -> dict[str, Any]:
    """The file as argparse destinations (org, user, ..., record_id, total, ...)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise RequestFileError(f"{path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise RequestFileError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}"
                               f": {exc}") from None
    if not isinstance(data, dict):
        raise RequestFileError(f"{path}: expected a mapping of CheckRequest fields "
                               "(org_id, user, action, module, record, ...)")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "record":
            if not isinstance(value, dict):
                raise RequestFileError(f"{path}: record: expected a mapping of record attributes")
            for rkey, rvalue in value.items():
                if rkey not in RECORD:
                    raise RequestFileError(f"{path}: record.{rkey}: unknown record attribute; "
                                           "expected one of " + ", ".join(sorted(RECORD)))
                out[rkey] = _record_value(path, rkey, rvalue)
        elif key in TOP:
            out[TOP[key]] = _top_value(path, key, value)
        else:
            raise RequestFileError(f"{path}: {key}: unknown field; expected one of "
                                   + ", ".join(k for k in TOP if k != "org") + ", record")
    return out


def _top_value(path: Path, key: str, value: Any) -> Any:
    if key in ("read_fields", "write_fields"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RequestFileError(f"{path}: {key}: expected a list of field names")
        return value
    if key == "channel":
        value = str(value).lower().removeprefix("channel_")
        if value not in ("crm", "direct"):
            raise RequestFileError(f"{path}: channel: expected crm or direct")
        return value
    if key == "explain":
        return bool(value)
    if key == "min_revision":
        return int(value)
    return str(value)


def _record_value(path: Path, key: str, value: Any) -> Any:
    try:
        if key == "total":
            return None if value is None else float(value)
        if key == "approval_level":
            return int(value)
    except (TypeError, ValueError):
        raise RequestFileError(f"{path}: record.{key}: '{value}' is not a number") from None
    return str(value)


def merge(args: argparse.Namespace, defaults: argparse.Namespace) -> argparse.Namespace:
    """Fill args from --request: a flag left at its default takes the file's value."""
    if args.request is not None:
        for dest, value in read(args.request).items():
            if getattr(args, dest) == getattr(defaults, dest):
                setattr(args, dest, value)
    missing = [f"--{name}" for name in REQUIRED if not getattr(args, name)]
    if missing:
        where = " (not in the flags nor in the request file)" if args.request else ""
        raise RequestFileError(
            f"missing {', '.join(missing)}{where}. A question needs the organization, the "
            "CRM user, the action and the module, e.g.\n  authz check --org acme-eu --user "
            "u-sam --action view --module invoices\nor a file: authz check --request "
            "question.yaml (see `authz check --help`)")
    return args
