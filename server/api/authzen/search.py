"""AuthZEN Resource Search (`POST /access/v1/search/resource`) backed by ListFilter.

AuthZEN's search returns the resources a subject may act on. We do not hold the CRM's
or the finance product's records, so we cannot list them; what we have is ListFilter:
one condition over record attributes that a record passes exactly when Check would allow
the action on it. The search therefore answers:

- always, in `context`: the filter (`scope` all / some / none, the condition tree, a SQL
  WHERE clause with `?` parameters over columns named after the attributes, and the
  revisions), the same as the ListFilter RPC, for a caller that queries its own records;
- when the request lists candidate records in `context.candidates` (each an AuthZEN
  Resource without `type`: `{"id", "properties": {owner, status, total, ...}}`), the
  candidates that pass, as `results`, paged with `page.limit` (default 100, at most
  1000) and the opaque `page.token` / `next_token`.

Each result, sent back as an evaluation with the same properties, is allowed (the
filter's guarantee; tests/e2e/test_authzen.py compares the two on the example org). The
request's `resource.id` is ignored (AuthZEN: the search is for ids);
`resource.properties` may name only `product`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from authz.engine.engine import Engine
from authz.engine.listfilter import FIELDS, matches
from authz.engine.validate import validate
from authz.errors import InvalidArgument
from authz.v1 import authz_pb2 as pb

from ...edge import doors
from .. import convert
from .. import listfilter as listfilter_rpc
from . import mapping as amap

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CANDIDATES = 1000


@dataclass(frozen=True)
class Search:
    """A parsed resource search: the question, the candidates, the page asked for."""

    request: pb.CheckRequest  # org, user, action, module, product, channel, min_revision
    candidates: list[tuple[dict[str, Any], dict[str, Any]]]  # (resource as given, record)
    offset: int
    limit: int


def parse(body: Mapping[str, Any]) -> Search:
    """Validate the search request; candidates go through the evaluation mapping and
    convert.py one by one, so a candidate is held to what an evaluation would be."""
    context = body.get("context") if isinstance(body.get("context"), dict) else None
    question = dict(body)
    if isinstance(body.get("resource"), dict):
        question["resource"] = {k: v for k, v in body["resource"].items() if k != "id"}
        props = body["resource"].get("properties")
        if isinstance(props, dict):
            amap.check_keys(props, ("product",), "resource.properties")
    if context is not None:
        question["context"] = {k: v for k, v in context.items() if k != "candidates"}
    msg = amap.check_request(question, extra=("page",),
                             context_keys=(*amap.CONTEXT_KEYS, "candidates"))
    offset, limit = _page(body.get("page"))
    raw = (context or {}).get("candidates", [])
    if not isinstance(raw, list):
        raise InvalidArgument("context.candidates", "must be an array of resources")
    if len(raw) > MAX_CANDIDATES:
        raise InvalidArgument("context.candidates", f"{len(raw)} items; at most {MAX_CANDIDATES}")
    candidates = [_candidate(body, msg, item, f"context.candidates[{i}]")
                  for i, item in enumerate(raw)]
    return Search(msg, candidates, offset, limit)


def _page(page: Any) -> tuple[int, int]:
    if page is None:
        return 0, DEFAULT_LIMIT
    if not isinstance(page, dict):
        raise InvalidArgument("page", "must be a JSON object")
    token = page.get("token", "")
    if not isinstance(token, str):
        raise InvalidArgument("page.token", "not a next_token this server gave")
    offset = doors.page_token(token, "page.token")  # ASCII digits only, within int64
    limit = page.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_LIMIT:
        raise InvalidArgument("page.limit", f"an integer from 1 to {MAX_LIMIT}")
    return offset, limit


def _candidate(body: Mapping[str, Any], msg: pb.CheckRequest, item: Any, at: str
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(item, dict):
        raise InvalidArgument(at, "must be a JSON object (a resource: id, properties)")
    amap.check_keys(item, ("type", "id", "properties"), at)
    if item.get("type", msg.module) != msg.module:
        raise InvalidArgument(f"{at}.type", f"must be the searched type '{msg.module}'")
    question: dict[str, Any] = {k: body[k] for k in ("subject", "action") if k in body}
    question["resource"] = {"type": msg.module, "id": item.get("id", ""),
                            "properties": item.get("properties", {})}
    try:
        one = amap.check_request(question)
        rec = convert.check_request(one).record
    except InvalidArgument as exc:
        field = amap.json_path(exc.field).replace("resource.", f"{at}.", 1)
        raise InvalidArgument(field, exc.description) from None
    record = {name: getattr(rec, name) for name in FIELDS}  # what the filter reads
    return {"type": msg.module, **{k: v for k, v in item.items() if k != "type"}}, record


def list_filter(engine: Engine, search: Search) -> pb.ListFilterResponse:
    """The ListFilter RPC's own function (synchronous: a worker thread runs it)."""
    q = search.request
    validate(convert.check_request(q))  # Check's own rules (product, module, action, user)
    lf = pb.ListFilterRequest(org_id=q.org_id, user=q.user, module=q.module, action=q.action,
                              product=q.product, channel=q.channel, min_revision=q.min_revision)
    return listfilter_rpc.list_filter(engine, lf)


def results(search: Search, answer: pb.ListFilterResponse) -> dict[str, Any]:
    """The search response: matching candidates (paged) and the filter in `context`."""
    tree = json_format.MessageToDict(answer.filter)
    passed = [given for given, record in search.candidates if matches(tree, record)]
    page = passed[search.offset:search.offset + search.limit]
    end = search.offset + len(page)
    scope = pb.FilterScope.Name(answer.scope).removeprefix("FILTER_SCOPE_").lower()
    return {
        "results": page,
        "page": {"next_token": str(end) if end < len(passed) else "", "count": len(page),
                 "total": len(passed)},
        "context": {"scope": scope, "filter": tree, "sql_where": answer.sql_where,
                    "sql_params": [json_format.MessageToDict(p) for p in answer.sql_params],
                    "policy_revision": answer.policy_revision,
                    "directory_revision": str(answer.directory_revision)}}
