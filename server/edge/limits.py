"""Edge validation that applies to every request, whatever the RPC.

convert.py validates the fields it maps (required text, 256-character limit, enums,
finite totals, e-mails) and the engine checks modules, actions and field names. What
neither can see is checked here, generically over the message, before any work:

- bytes that do not decode as the request type: INVALID_ARGUMENT, not gRPC's own
  INTERNAL "Exception deserializing request";
- control characters in any text (NUL cannot be stored in PostgreSQL text, and
  newlines in identifiers forge log lines);
- organization ids longer than the store's 128 characters;
- text longer than MAX_TEXT and repeated fields longer than MAX_REPEATED, so that a
  request within the message-size limit still cannot make the server do unbounded work
  (RPCs with their own tighter caps, such as CheckBatch's 1000, keep them);
- negative integers (every integer a request carries is a revision, a level or a page
  size: none is negative) and timestamps google.protobuf.Timestamp does not allow (years
  1..9999, nanos 0..999,999,999), which would otherwise fail deep inside as INTERNAL.

server/edge/doors.py holds these rules for the doors that read text or JSON (ext_authz
headers, AuthZEN, request files) and `question()`, the one check of a CheckRequest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from authz.errors import InvalidArgument

MAX_TEXT = 1024  # generic; the fields convert.py maps are held to 256
MAX_ORG_ID = 128  # the store's column; also keeps policy file names within NAME_MAX
MAX_REPEATED = 100_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_INTEGERS = frozenset((FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64,
                       FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
                       FieldDescriptor.TYPE_SFIXED32, FieldDescriptor.TYPE_SFIXED64))
TIMESTAMP = "google.protobuf.Timestamp"
# Timestamp's documented range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z
_TS_MIN, _TS_MAX = -62_135_596_800, 253_402_300_799


def has_control(value: str) -> bool:
    """True when `value` holds a control character (C0, DEL or C1)."""
    return _CONTROL.search(value) is not None


def timestamp_problem(ts: Message) -> str:
    """What is wrong with a google.protobuf.Timestamp ("" when nothing)."""
    seconds, nanos = getattr(ts, "seconds"), getattr(ts, "nanos")  # noqa: B009
    if not _TS_MIN <= seconds <= _TS_MAX:
        return "outside 0001-01-01..9999-12-31"
    if not 0 <= nanos <= 999_999_999:
        return "nanos must be 0 to 999,999,999"
    return ""


class Undecodable:
    """Stands in for a request whose bytes did not parse; the gate rejects it."""

    def __init__(self, error: str) -> None:
        self.error = error


class OverBudget:
    """Stands in for a request not parsed: the in-flight bytes budget could not hold it."""

    def __init__(self, size: int) -> None:
        self.size = size


def guard_deserializer(deserialize: Callable[[bytes], Any] | None,
                       fits: Callable[[int], bool] | None = None) -> Callable[[bytes], Any]:
    """Wrap a request deserializer so malformed bytes become an Undecodable value, and
    bytes the in-flight budget cannot hold (`fits`) an OverBudget one, never parsed."""
    def safe(data: bytes) -> Any:
        if fits is not None and not fits(len(data)):
            return OverBudget(len(data))
        try:
            return deserialize(data) if deserialize is not None else data
        except Exception as exc:
            return Undecodable(type(exc).__name__)
    return safe


def check_message(msg: Message, path: str = "") -> None:
    """Raise InvalidArgument naming the first field that breaks a generic limit."""
    if _within_limits(msg):
        return
    _name_violation(msg, path)


# Per field descriptor: (type, repeated, map, text limit), read once instead of per call.
_FIELD_INFO: dict[Any, tuple[int, bool, bool, int]] = {}
_STRING, _BYTES, _MESSAGE = (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES,
                             FieldDescriptor.TYPE_MESSAGE)


def _within_limits(msg: Message) -> bool:
    """The check on the hot path (every Check, every CheckBatch item): True when nothing
    breaks a limit, without building field paths; a request that does break one is
    walked again by `_name_violation` to name the field. Maps take that walk too.
    Lengths are tested field by field; control characters by one search over all the
    text of the request (a CheckBatch has ~10,000 strings: one search, not 10,000)."""
    texts: list[str] = []
    return _lengths_within(msg, texts) and not _CONTROL.search("\x20".join(texts))


def _lengths_within(msg: Message, texts: list[str]) -> bool:
    """Every limit but control characters; collects the message's text into `texts`."""
    for fd, value in msg.ListFields():
        info = _FIELD_INFO.get(fd)
        if info is None:
            info = _FIELD_INFO[fd] = (fd.type, fd.is_repeated, _is_map(fd),
                                      MAX_ORG_ID if fd.name == "org_id" else MAX_TEXT)
        kind, repeated, is_map, limit = info
        if is_map:
            return False
        if kind == _STRING:
            if repeated:
                if len(value) > MAX_REPEATED or max(map(len, value), default=0) > limit:
                    return False
                texts.extend(value)
            else:
                if len(value) > limit:
                    return False
                texts.append(value)
            continue
        values = value if repeated else (value,)
        if repeated and len(values) > MAX_REPEATED:
            return False
        if kind == _BYTES:
            for v in values:
                if len(v) > MAX_TEXT * 64:
                    return False
        elif kind == _MESSAGE:
            for v in values:
                if isinstance(v, Message):
                    if v.DESCRIPTOR.full_name == TIMESTAMP and timestamp_problem(v):
                        return False
                    if not _lengths_within(v, texts):
                        return False
        elif kind in _INTEGERS and min(values) < 0:
            return False
    return True


def _name_violation(msg: Message, path: str = "") -> None:
    fields: Sequence[tuple[Any, Any]] = msg.ListFields()
    for fd, value in fields:
        name = f"{path}{fd.name}"
        if fd.is_repeated and not _is_map(fd):
            if len(value) > MAX_REPEATED:
                raise InvalidArgument(name, f"{len(value)} items; at most {MAX_REPEATED}")
            for i, item in enumerate(value):
                _check_value(fd, item, f"{name}[{i}]")
        elif _is_map(fd):
            if len(value) > MAX_REPEATED:
                raise InvalidArgument(name, f"{len(value)} entries; at most {MAX_REPEATED}")
            for k, v in value.items():
                _check_value(fd.message_type.fields_by_name["key"], k, f"{name}[{k!r}]")
                _check_value(fd.message_type.fields_by_name["value"], v, f"{name}[{k!r}]")
        else:
            _check_value(fd, value, name)


def _is_map(fd: Any) -> bool:
    return (fd.type == FieldDescriptor.TYPE_MESSAGE and fd.message_type is not None
            and fd.message_type.GetOptions().map_entry)


def _check_value(fd: Any, value: Any, name: str) -> None:
    if fd.type == FieldDescriptor.TYPE_STRING:
        if fd.name == "org_id" and len(value) > MAX_ORG_ID:
            # Found by fuzzing: a 300-character org_id reached a file lookup (ENAMETOOLONG).
            raise InvalidArgument(name, f"longer than {MAX_ORG_ID} characters")
        if len(value) > MAX_TEXT:
            raise InvalidArgument(name, f"longer than {MAX_TEXT} characters")
        if _CONTROL.search(value):
            raise InvalidArgument(name, "contains control characters")
    elif fd.type == FieldDescriptor.TYPE_BYTES:
        if len(value) > MAX_TEXT * 64:
            raise InvalidArgument(name, f"longer than {MAX_TEXT * 64} bytes")
    elif fd.type in _INTEGERS and value < 0:
        raise InvalidArgument(name, "must not be negative")
    elif fd.type == FieldDescriptor.TYPE_MESSAGE and isinstance(value, Message):
        if value.DESCRIPTOR.full_name == TIMESTAMP and timestamp_problem(value):
            raise InvalidArgument(name, timestamp_problem(value))
        _name_violation(value, name + ".")


def org_ids(msg: Message) -> Iterator[str]:
    """Organizations a request names: its own org_id, and those of repeated sub-requests
    (CheckBatch items). These are what the caller's organizations are checked against."""
    desc: Any = msg.DESCRIPTOR
    if "org_id" in desc.fields_by_name:
        yield str(getattr(msg, "org_id"))  # noqa: B009 (Message has no such attribute statically)
    for fd in desc.fields:
        if (fd.is_repeated and fd.message_type is not None
                and "org_id" in fd.message_type.fields_by_name and not _is_map(fd)):
            for item in getattr(msg, fd.name):
                yield str(item.org_id)
