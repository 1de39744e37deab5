"""One validation for every door: gRPC, Envoy ext_authz, HTTP (AuthZEN), request files.

Every way a question reaches the engine ends as the same `authz.v1.CheckRequest`, and
`question()` is the one call that checks it: the generic limits (server/edge/limits.py:
control characters, lengths, counts, timestamps, numeric ranges), then the field rules
(server/api/convert.py: required fields, enums, finite totals). A door that reads text or
JSON first turns its values into proto fields with the helpers below, which hold text
numbers, timestamps and page tokens to the same rules, so that no door is laxer:

- `integer`: ASCII digits only (int("١٢٣") is 123 in Python, "²".isdigit() is True),
  within the field's range (int32, int64, or tighter), never a silent overflow;
- `number`: a finite decimal (no NaN, no infinity, no "1e999"), ASCII only;
- `text`: no control characters, bounded length;
- `timestamp`: within 0001-01-01..9999-12-31 and nanos 0..999,999,999 (what
  google.protobuf.Timestamp allows), as an aware datetime;
- `page_token`: only what this server hands out (a decimal sequence number).

All raise authz.errors.InvalidArgument naming the field as the door's caller wrote it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from authz.decision import CheckRequest
from authz.errors import InvalidArgument
from authz.v1 import authz_pb2 as pb

from ..api import convert
from . import limits

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,4})?")
_TOKEN = re.compile(r"[0-9]{1,19}")


def question(msg: pb.CheckRequest) -> CheckRequest:
    """The domain's CheckRequest for `msg`, after every rule a gRPC Check passes."""
    limits.check_message(msg)
    return convert.check_request(msg)


def text(value: Any, field: str, limit: int = limits.MAX_TEXT) -> str:
    """A text value: a string, no control characters, at most `limit` characters."""
    if not isinstance(value, str):
        raise InvalidArgument(field, "must be text")
    if len(value) > limit:
        raise InvalidArgument(field, f"longer than {limit} characters")
    if limits.has_control(value):
        raise InvalidArgument(field, "contains control characters")
    return value


def integer(value: Any, field: str, lo: int, hi: int) -> int:
    """An integer given as a number or as ASCII decimal text, within lo..hi."""
    if isinstance(value, str):
        if not _INTEGER.fullmatch(value.strip()):
            raise InvalidArgument(field, f"'{value[:32]}' is not a whole number")
        value = int(value.strip())
    elif isinstance(value, float) and value.is_integer() and abs(value) < 2**64:
        value = int(value)  # JSON and YAML write 3.0 for 3
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(field, "must be a whole number")
    if not lo <= value <= hi:
        raise InvalidArgument(field, f"must be between {lo} and {hi}")
    return value


def number(value: Any, field: str) -> float:
    """A finite number given as a number or as ASCII decimal text."""
    if isinstance(value, str):
        if not _NUMBER.fullmatch(value.strip()):
            raise InvalidArgument(field, f"'{value[:32]}' is not a number")
        value = float(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(field, "must be a number")
    try:
        out = float(value)
    except OverflowError:  # an int beyond a double's range
        raise InvalidArgument(field, "must be a finite number") from None
    if not math.isfinite(out):
        raise InvalidArgument(field, "must be a finite number")
    return out


def timestamp(ts: Timestamp, field: str) -> dt.datetime:
    """A protobuf Timestamp as an aware UTC datetime, refused (not INTERNAL) out of range."""
    problem = limits.timestamp_problem(ts)
    if problem:
        raise InvalidArgument(field, problem)
    return ts.ToDatetime(tzinfo=dt.UTC)


def page_token(token: str, field: str = "page_token") -> int:
    """The sequence number a page token stands for (0 for the first page)."""
    if not token:
        return 0
    if not _TOKEN.fullmatch(token) or int(token) > INT64[1]:
        raise InvalidArgument(field, "not a token this server returned")
    return int(token)
