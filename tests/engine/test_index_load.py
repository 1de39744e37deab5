"""The index's policy loader reads exactly what Casbin's stock FileAdapter reads."""

from __future__ import annotations

from pathlib import Path

import casbin
import pytest
from casbin.model import Model
from casbin.persist.adapters import FileAdapter

from authz.engine.index import load_enforcer
from authz.policy.compiler import MODEL_CONF

GENERATED = Path(__file__).resolve().parents[2] / "authz" / "policies" / "generated"
PTYPES = (("p", "p"), ("p", "p2"), ("p", "p3"), ("p", "p4"), ("g", "g"))


def _stock(path: Path) -> casbin.Enforcer:
    model = Model()
    model.load_model_from_text(MODEL_CONF)
    return casbin.Enforcer(model, FileAdapter(str(path)))


def _policy(e: casbin.Enforcer) -> dict[str, list[list[str]]]:
    return {ptype: [list(r) for r in e.model.model[sec][ptype].policy] for sec, ptype in PTYPES}


@pytest.mark.parametrize("org", ["acme-eu", "globex-us"])
def test_compiled_policy_loads_as_casbin_loads_it(org: str) -> None:
    path = GENERATED / "orgs" / f"{org}.csv"
    assert _policy(load_enforcer(path)) == _policy(_stock(path))


@pytest.mark.parametrize("text", [
    "p, books:a, books, invoices, view, all, *\n# comment\n\n  p2 ,x, books, m, f, hidden\n",
    "p, books:a,books,  invoices , view, all, *\r\ng, user:x@y.z, books:a\n",
    "p, role(1, 2), books, invoices, view, all, *\np, \"q\", books, m, view, all, crm\n",
    "p,\tbooks:a, books, m, view, all, *\nx, ignored\np3, s, books, m, f\u00a0, 1\n",
])
def test_unusual_text_loads_as_casbin_loads_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "org.csv"
    path.write_text(text, encoding="utf-8")
    assert _policy(load_enforcer(path)) == _policy(_stock(path))
