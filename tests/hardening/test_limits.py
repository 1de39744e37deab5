"""The gate's generic limits (server/edge/limits.py): the generated per-type check on the
hot path decides every request exactly as the reflective walk that names the field.

Random requests of every AuthzService method (and the types they contain), built from
the descriptors with values at and past each limit: text of 128/129 and 1024/1025
characters, control characters (C0, DEL, C1), negative integers, timestamps outside
0001..9999 and bad nanos, repeated fields, maps."""

from __future__ import annotations

import random
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from authz.errors import InvalidArgument
from authz.v1 import authz_pb2 as pb
from authz_server.edge import limits

SERVICE = pb.DESCRIPTOR.services_by_name["AuthzService"]
TEXTS = ["", "acme-eu", "a" * 128, "a" * 129, "b" * 1024, "b" * 1025, "x\x00y", "new\nline",
         "del\x7f", "c1\x85", "é" * 200]
INTS = [0, 3, -1, 2**30, -(2**30)]


def _fill(msg: Message, rng: random.Random, depth: int = 0) -> None:
    """Sets some of the fields of `msg` (recursively) to values around the limits."""
    desc: Any = msg.DESCRIPTOR
    if desc.full_name == limits.TIMESTAMP:
        msg.seconds = rng.choice([0, 1_700_000_000, -1, -62_135_596_801, 253_402_300_800])  # type: ignore[attr-defined]
        msg.nanos = rng.choice([0, 5, 1_000_000_000, -1])  # type: ignore[attr-defined]
        return
    for fd in desc.fields:
        if rng.random() < 0.4:
            continue
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            if rng.random() < 0.3:
                key_fd = fd.message_type.fields_by_name["key"]
                val_fd = fd.message_type.fields_by_name["value"]
                m = getattr(msg, fd.name)
                key = rng.choice(TEXTS) if key_fd.type == FieldDescriptor.TYPE_STRING else 1
                if val_fd.type == FieldDescriptor.TYPE_STRING:
                    m[key] = rng.choice(TEXTS)
                elif val_fd.message_type is None:
                    m[key] = rng.choice(INTS) if val_fd.type in limits._INTEGERS else 0
            continue
        count = rng.randint(0, 3) if fd.is_repeated else 1
        for _ in range(count):
            value = _value(fd, msg, rng, depth)
            if value is None:
                continue
            if fd.is_repeated:
                getattr(msg, fd.name).append(value)
            else:
                setattr(msg, fd.name, value)


def _value(fd: Any, msg: Message, rng: random.Random, depth: int) -> Any:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        if depth > 3:
            return None
        sub = getattr(msg, fd.name)
        target = sub.add() if fd.is_repeated else sub
        _fill(target, rng, depth + 1)
        if not fd.is_repeated:
            target.SetInParent()
        return None
    if fd.type == FieldDescriptor.TYPE_STRING:
        return rng.choice(TEXTS)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return b"z" * rng.choice([0, 10, 65536, 65537])
    if fd.type in limits._INTEGERS:
        return rng.choice(INTS)
    if fd.type == FieldDescriptor.TYPE_ENUM:
        return rng.choice(fd.enum_type.values).number
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return rng.choice([0.0, -1.5, 3.0])
    return rng.choice([0, 7])  # unsigned and fixed: never negative


def _names(msg: Message) -> str | None:
    """The field the naming walk refuses, or None."""
    try:
        limits._name_violation(msg)
    except InvalidArgument as exc:
        return exc.field
    return None


@pytest.mark.parametrize("method", [m.name for m in SERVICE.methods])
def test_the_hot_path_check_decides_as_the_naming_walk(method: str) -> None:
    desc = SERVICE.methods_by_name[method].input_type
    cls = type(getattr(pb, desc.name)())
    rng = random.Random(method)
    seen = {True: 0, False: 0}
    for _ in range(400):
        msg = cls()
        _fill(msg, rng)
        within = limits._within_limits(msg)
        refused = _names(msg)
        seen[within] += 1
        has_map = any(f.message_type is not None and f.message_type.GetOptions().map_entry
                      for f, _ in _all_fields(msg))
        if has_map:  # maps always take the naming walk: it alone decides
            assert not within
        else:
            assert within == (refused is None), (msg, refused)
    assert seen[False], "no request broke a limit: the test would show nothing"


def _all_fields(msg: Message) -> list[tuple[Any, Any]]:
    out = []
    for fd, value in msg.ListFields():
        out.append((fd, value))
        if fd.type == FieldDescriptor.TYPE_MESSAGE and not (
                fd.message_type.GetOptions().map_entry):
            for v in value if fd.is_repeated else [value]:
                out += _all_fields(v)
    return out


def test_a_batch_item_past_a_limit_is_named() -> None:
    batch = pb.CheckBatchRequest(requests=[
        pb.CheckRequest(org_id="acme-eu", user="u", action="view", module="invoices")
        for _ in range(5)])
    limits.check_message(batch)
    batch.requests[3].record.location = "paris\x00"
    with pytest.raises(InvalidArgument) as err:
        limits.check_message(batch)
    assert err.value.field == "requests[3].record.location"
    batch.requests[3].record.location = "paris"
    batch.requests[4].org_id = "o" * 129
    with pytest.raises(InvalidArgument) as err:
        limits.check_message(batch)
    assert err.value.field == "requests[4].org_id"
