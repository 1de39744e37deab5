"""Operations with `--workers 2` (issue 14 item 5): /metrics counts every worker's calls,
process metrics per worker, and every line the server writes is JSON, gRPC core's own
included."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc
from tests.e2e.serverproc import ServerProc, free_port, seed, start_server

CALLS = 40


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProc, int]]:
    work = tmp_path_factory.mktemp("workers")
    url = f"sqlite:///{work / 'authz.db'}"
    seed(url)
    metrics_port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRPC_VERBOSITY", "INFO")  # makes gRPC core write lines of its own
        srv = start_server(work, url, "--workers", "2", "--metrics-listen",
                           f"127.0.0.1:{metrics_port}")
    # Health answers once one worker serves; the test needs both listening.
    deadline = time.monotonic() + 60
    while srv.log().count('"event": "serving"') < 2:
        assert time.monotonic() < deadline, srv.log()
        time.sleep(0.1)
    yield srv, metrics_port
    if srv.proc.poll() is None:
        assert srv.stop() == 0, srv.log()


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {s.name: [*[(x.labels, x.value) for x in f.samples if x.name == s.name]]
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_metrics_count_the_calls_of_every_worker(workers: tuple[ServerProc, int]) -> None:
    srv, port = workers
    for _ in range(CALLS):  # a connection each: the kernel spreads them over the workers
        with grpc.insecure_channel(srv.address,
                                   options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
            authz_pb2_grpc.AuthzServiceStub(ch).Check(pb.CheckRequest(
                org_id="acme-eu", user="u-sam", action="view", module="invoices"), timeout=10)
    samples = scrape(port)
    checks = sum(v for labels, v in samples["authz_rpcs_total"]
                 if labels.get("method") == "Check" and labels.get("code") == "OK")
    assert checks == CALLS
    decided = sum(v for labels, v in samples["authz_decisions_total"]
                  if labels.get("reason") == "granted")
    assert decided >= CALLS
    pids = {labels["pid"] for labels, _ in samples["process_cpu_seconds_total"]}
    assert len(pids) == 2, pids  # one per worker
    assert all(v > 0 for _, v in samples["process_resident_memory_bytes"])


def test_every_log_line_is_json_and_the_metrics_folder_goes(
        workers: tuple[ServerProc, int]) -> None:
    srv, _ = workers
    assert srv.stop() == 0
    lines = [line for line in srv.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # raises on any line that is not JSON
    assert all(isinstance(r, dict) and "event" in r and "level" in r for r in records)
    native = [r for r in records if r["logger"] == "grpc.core"]
    assert native and all(r["event"] == "native_log" and r["line"] for r in native)
    (started,) = [r for r in records if r["event"] == "workers"]
    assert not Path(started["metrics_dir"]).exists()
