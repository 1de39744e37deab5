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

import keyword
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from authz.errors import InvalidArgument

MAX_TEXT = 1024  # generic; the fields convert.py maps are held to 256
MAX_ORG_ID = 128  # the store's column; also keeps policy file names within NAME_MAX
MAX_REPEATED = 100_000
_STRING, _BYTES, _MESSAGE = (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES,
                             FieldDescriptor.TYPE_MESSAGE)
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


def _within_limits(msg: Message) -> bool:
    """The check on the hot path (every Check, every CheckBatch item): True when nothing
    breaks a limit, without building field paths; a request that does break one is
    walked again by `_name_violation` to name the field. Maps take that walk too.
    Lengths are tested field by field; control characters by one search over all the
    text of the request (a CheckBatch has ~10,000 strings: one search, not 10,000)."""
    texts: list[str] = []
    return _checker(msg.DESCRIPTOR)(msg, texts) and not _CONTROL.search("\x20".join(texts))


#: Per message type (full name): its generated check, built once from the descriptor.
_CHECKERS: dict[str, Callable[[Message, list[str]], bool]] = {}


def _checker(desc: Any) -> Callable[[Message, list[str]], bool]:
    """The limits of one message type as straight-line code over its fields (attribute
    reads, no ListFields and no per-field dispatch): a CheckBatch of 1,000 items is
    walked several times faster. An unset field reads as its default, which breaks no
    limit, so reading every field decides as the rules over the set ones do;
    tests/hardening/test_limits.py compares it with `_name_violation` on random messages."""
    name = desc.full_name
    found = _CHECKERS.get(name)
    if found is not None:
        return found
    lines = ["def check(m, texts):"]
    plain: list[str] = []  # singular text held to MAX_TEXT: one length test for all
    subs: list[Any] = []
    for fd in desc.fields:
        get = (f"m.{fd.name}" if fd.name.isidentifier() and not keyword.iskeyword(fd.name)
               else f"getattr(m, {fd.name!r})")
        limit = MAX_ORG_ID if fd.name == "org_id" else MAX_TEXT
        if _is_map(fd):
            lines.append(f"    if len({get}): return False")  # maps: the naming walk
        elif fd.is_repeated:
            lines += [f"    v = {get}", "    if len(v) > MAX_REPEATED: return False"]
            if fd.type == _STRING:
                lines += [f"    if v and max(map(len, v)) > {limit}: return False",
                          "    texts += v"]
            elif fd.type == _BYTES:
                lines.append("    if v and max(map(len, v)) > MAX_BYTES: return False")
            elif fd.type == _MESSAGE:
                subs.append(fd.message_type)
                if fd.message_type.full_name == TIMESTAMP:
                    lines += ["    for x in v:",
                              "        if timestamp_problem(x): return False"]
                lines += [f"    c = CHECKERS[{fd.message_type.full_name!r}]",
                          "    for x in v:", "        if not c(x, texts): return False"]
            elif fd.type in _INTEGERS:
                lines.append("    if v and min(v) < 0: return False")
        elif fd.type == _STRING and limit == MAX_TEXT:
            plain.append(get)
        elif fd.type == _STRING:
            lines += [f"    v = {get}", f"    if len(v) > {limit}: return False",
                      "    texts.append(v)"]
        elif fd.type == _BYTES:
            lines.append(f"    if len({get}) > MAX_BYTES: return False")
        elif fd.type == _MESSAGE and _checks_nothing(fd.message_type):
            continue  # e.g. google.protobuf.DoubleValue: nothing in it has a limit
        elif fd.type == _MESSAGE:
            subs.append(fd.message_type)
            lines += [f"    if m.HasField({fd.name!r}):", f"        v = {get}"]
            if fd.message_type.full_name == TIMESTAMP:
                lines.append("        if timestamp_problem(v): return False")
            lines.append(f"        if not CHECKERS[{fd.message_type.full_name!r}](v, texts): "
                         "return False")
        elif fd.type in _INTEGERS:
            lines.append(f"    if {get} < 0: return False")
    if plain:
        lines += [f"    v = ({', '.join(plain)},)",
                  "    if max(map(len, v)) > MAX_TEXT: return False", "    texts += v"]
    lines.append("    return True")
    scope: dict[str, Any] = {"CHECKERS": _CHECKERS, "MAX_REPEATED": MAX_REPEATED,
                             "MAX_TEXT": MAX_TEXT, "MAX_BYTES": MAX_TEXT * 64,
                             "timestamp_problem": timestamp_problem}
    exec("\n".join(lines), scope)  # code built from our own descriptors, once per type
    check: Callable[[Message, list[str]], bool] = scope["check"]
    _CHECKERS[name] = check  # before the fields' types: a type may contain itself
    for sub in subs:
        _checker(sub)
    return check


def _checks_nothing(desc: Any, seen: frozenset[str] = frozenset()) -> bool:
    """A message type none of whose fields, at any depth, has a limit: only numbers that
    may be negative no more than bools, enums, floats and unsigned ones can be."""
    if desc.full_name == TIMESTAMP or desc.full_name in seen:
        return False
    for fd in desc.fields:
        if fd.is_repeated or fd.type in (_STRING, _BYTES) or fd.type in _INTEGERS:
            return False
        if fd.type == _MESSAGE and not _checks_nothing(fd.message_type, seen | {desc.full_name}):
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
