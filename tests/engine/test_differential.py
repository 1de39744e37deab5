"""Differential tests: `decide` over the index equals `decide` over Casbin's enforce.

Random organizations go through the real reader and compiler; each is loaded both as
the index (what serves) and as the reference view (Casbin `enforce`, users linked to
their roles by `g`), unfiltered and filtered. Every field of every decision must agree
except the decision id, which is fresh each time.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.decision import CheckRequest, Decision
from authz.directory import DirectorySnapshot
from authz.engine.approvers import PolicyView
from authz.engine.decide import decide
from authz.engine.index import OrgIndex, load_org
from authz.engine.reference import ReferenceView
from authz.errors import AuthzError
from tests.engine.orggen import ORG_ID, OrgSpec, compile_into, directories, organizations, requests


def _same(d: Decision) -> Decision:
    return dataclasses.replace(d, decision_id="")


def _outcome(req: CheckRequest, idx: OrgIndex, snap: DirectorySnapshot,
             view: PolicyView | None = None) -> Decision | tuple[str, str]:
    """The decision, or the refusal (a rule reading an attribute the request lacks)."""
    try:
        return _same(decide(req, idx, snap, view=view))
    except AuthzError as exc:
        return (type(exc).__name__, str(exc))


def _check(req: CheckRequest, idx: OrgIndex, snap: DirectorySnapshot,
           views: list[ReferenceView]) -> None:
    want = _outcome(req, idx, snap)
    for ref in views:
        view: PolicyView = ref.for_request(req)
        got = _outcome(req, idx, snap, view)
        assert got == want, f"filtered={ref.filtered}\nindex:     {want}\nreference: {got}"
        assert _outcome(req, idx, snap, ref) == want  # asked by role subjects


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(spec=organizations(), data=st.data())
def test_index_and_casbin_reference_decide_alike(spec: OrgSpec, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        generated = compile_into(Path(tmp), spec)
        idx = load_org(generated, ORG_ID)
        snap = data.draw(directories(spec), label="directory")
        csv, manifest = generated / "orgs" / f"{ORG_ID}.csv", generated / "orgs" / f"{ORG_ID}.json"
        views = [ReferenceView.load(csv, manifest, snap),
                 ReferenceView.load(csv, manifest, snap, filtered=True)]
        for req in data.draw(st.lists(requests(spec), min_size=10, max_size=20), label="requests"):
            _check(req, idx, snap, views)
