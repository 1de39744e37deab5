"""Differential tests across organizations held in one process: the index shares equal
role tables, approval settings and role sets between organizations (`index._shared`,
`identity._role_set`), and caches labels and resolved identities. Two random
organizations whose custom roles have the same ids (books:c0, ...) but different rules,
users in both products, e-mail addresses in mixed case: each must decide as its own
Casbin reference, before and after a third organization (a reload of the first) is
loaded into the same process."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.engine.index import load_org
from authz.engine.reference import ReferenceView
from tests.engine.orggen import ORG_ID, OrgSpec, compile_into, directories, organizations, requests
from tests.engine.test_differential import _check, _outcome


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(specs=st.lists(organizations(), min_size=3, max_size=3), data=st.data())
def test_organizations_sharing_role_names_decide_as_their_own_reference(
        specs: list[OrgSpec], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        loaded = []
        for n, spec in enumerate(specs):
            generated = compile_into(Path(tmp) / str(n), spec)
            orgs = generated / "orgs"
            snap = data.draw(directories(spec), label=f"directory {n}")
            views = [ReferenceView.load(orgs / f"{ORG_ID}.csv", orgs / f"{ORG_ID}.json", snap,
                                        filtered=f) for f in (False, True)]
            reqs = data.draw(st.lists(requests(spec), min_size=8, max_size=15), label=f"req {n}")
            loaded.append((generated, snap, views, reqs))
        a, b = (load_org(loaded[i][0], ORG_ID) for i in (0, 1))
        answers_b = [_outcome(req, b, loaded[1][1]) for req in loaded[1][3]]
        for idx, (_, snap, views, reqs) in zip((a, b), loaded[:2], strict=True):
            for req in reqs:
                _check(req, idx, snap, views)
        # "reload" the first organization with other rules under the same role ids
        a2 = load_org(loaded[2][0], ORG_ID)
        _, snap2, views2, reqs2 = loaded[2]
        for req in reqs2:
            _check(req, a2, snap2, views2)
        assert [_outcome(req, b, loaded[1][1]) for req in loaded[1][3]] == answers_b
        for req in loaded[1][3]:
            _check(req, b, loaded[1][1], loaded[1][2])
        for req in loaded[0][3]:
            _check(req, a, loaded[0][1], loaded[0][2])
