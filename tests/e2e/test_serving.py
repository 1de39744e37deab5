"""Serving settings (`--workers`, `--threads`, inline decisions) and the edge limit check's
fast path, which must refuse exactly what the naming walk refuses, naming the same field."""

from __future__ import annotations

import dataclasses

import pytest

from authz.errors import InvalidArgument
from authz.v1 import authz_pb2 as pb
from authz_server.edge import limits
from authz_server.process.config import Config, ConfigError, load
from authz_server.process.workers import worker_configs


def test_serving_settings_from_environment() -> None:
    cfg = load({}, {"AUTHZ_WORKERS": "3", "AUTHZ_THREADS": "8", "AUTHZ_DECIDE_INLINE": "false"})
    assert (cfg.workers, cfg.threads, cfg.decide_inline) == (3, 8, False)
    assert (Config().workers, Config().decide_inline) == (1, True)


def test_workers_need_a_fixed_port_and_share_one_metrics_endpoint() -> None:
    with pytest.raises(ConfigError, match="fixed port"):
        worker_configs(Config(listen="127.0.0.1:0", workers=2))
    cfgs = worker_configs(Config(listen="127.0.0.1:50999", workers=3,
                                 metrics_listen="127.0.0.1:9100"))
    assert [c.metrics_listen for c in cfgs] == ["127.0.0.1:9100", "", ""]
    assert {dataclasses.replace(c, metrics_listen="") for c in cfgs} == {
        dataclasses.replace(cfgs[0], metrics_listen="")}


def _field(msg: pb.CheckBatchRequest | pb.CheckRequest) -> str | None:
    try:
        limits.check_message(msg)
    except InvalidArgument as exc:
        return exc.field
    return None


@pytest.mark.parametrize(("item", "field"), [
    (pb.CheckRequest(org_id="o", user="u", action="view", module="invoices"), None),
    (pb.CheckRequest(org_id="o" * 129, user="u"), "requests[1].org_id"),
    (pb.CheckRequest(org_id="o", user="u\n"), "requests[1].user"),
    (pb.CheckRequest(org_id="o", record=pb.Record(status="x" * 1025)), "requests[1].record.status"),
    (pb.CheckRequest(org_id="o", write_fields=["ok", "bad\x00"]), "requests[1].write_fields[1]"),
])
def test_limits_refuse_and_name_as_before(item: pb.CheckRequest, field: str | None) -> None:
    ok = pb.CheckRequest(org_id="o", user="u", action="view", module="invoices")
    batch = pb.CheckBatchRequest(requests=[ok, item])
    assert _field(batch) == field
    assert _field(item) == (field.removeprefix("requests[1].") if field else None)
