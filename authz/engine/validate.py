"""Whether a question is well formed (fields, sizes, a module and action the catalogue
knows), before anything is decided: INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import math
import re

from authz import catalog
from authz.decision import (
    CheckRequest,
)
from authz.errors import InvalidArgument

MAX_FIELDS = 200
MAX_TEXT = 256
# Field names as the policy spells them (lower-case snake_case): "Discount" or
# "discount.x" would otherwise miss the rule for "discount" and slip past it.
_FIELD = re.compile(r"^[a-z_][a-z0-9_]{0,127}$")


#: (product, module, action) triples a request may name ("" product: any); checked in one
#: lookup on the hot path, the detailed checks below only run to name what is wrong.
_VALID_TARGETS = frozenset(
    (p, m, a) for m in catalog.ALL_MODULES for a in catalog.actions_for(m)
    for p in ("", *catalog.products_with(m)))


#: catalog.products_with, precomputed.
_PRODUCTS_WITH = {m: catalog.products_with(m) for m in catalog.ALL_MODULES}


def validate(req: CheckRequest) -> None:
    """Reject malformed requests before any work, naming the field."""
    if not req.org_id:
        raise InvalidArgument("org_id", "required")
    if not req.user or not req.user.strip():
        raise InvalidArgument("user", "required: a CRM user id or e-mail address")
    if len(req.user) > MAX_TEXT:
        raise InvalidArgument("user", f"longer than {MAX_TEXT} characters")
    if (req.product, req.module, req.action) not in _VALID_TARGETS:
        _invalid_target(req)
    rec = req.record
    if rec.status and rec.status not in catalog.RECORD_STATES:
        raise InvalidArgument("record.status", f"unknown status '{rec.status[:64]}': no module "
                              "has it (e.g. draft, pending_approval, approved, sent, viewed, paid)")
    if rec.total is not None and (math.isnan(rec.total) or math.isinf(rec.total)):
        raise InvalidArgument("record.total", "must be a finite number")
    if rec.total is not None and rec.total < 0:
        raise InvalidArgument("record.total", "must not be negative")
    for name, text in (("created_by", rec.created_by), ("owner", rec.owner),
                       ("customer_id", rec.customer_id)):
        if text != text.strip():  # " fiona@..." would not match Fiona for self-approval
            raise InvalidArgument(f"record.{name}", "must not start or end with white space")
    if rec.approval_level < 0 or rec.approval_level > 10:
        raise InvalidArgument("record.approval_level", "must be between 0 and 10")
    for name, fields in (("read_fields", req.read_fields), ("write_fields", req.write_fields)):
        if len(fields) > MAX_FIELDS:
            raise InvalidArgument(name, f"more than {MAX_FIELDS} fields")
        for f in fields:
            if not _FIELD.match(f):
                raise InvalidArgument(name, f"invalid field name '{f[:64]}': field names are "
                                      "lower-case snake_case, as in the policy")


def _invalid_target(req: CheckRequest) -> None:
    """Name what is wrong with the request's module, product or action."""
    validate_target(req.module, req.action, req.product)


def validate_target(module: str, action: str, product: str = "") -> None:
    """Refuse a module, product or action the suite does not have, naming the field (every
    door that names an operation: Check, Attribute, ...)."""
    if (product, module, action) in _VALID_TARGETS:
        return
    if module not in catalog.ALL_MODULES:
        raise InvalidArgument("module", f"unknown module '{module[:64]}'")
    if product and product not in catalog.PRODUCTS:
        raise InvalidArgument("product", f"unknown product '{product[:64]}'; expected one of "
                              + ", ".join(catalog.PRODUCTS))
    if product and module not in catalog.MODULES[product]:
        raise InvalidArgument("module", f"'{module}' is not a {product} module")
    if action not in catalog.actions_for(module):
        raise InvalidArgument("action", f"unknown action '{action[:64]}' on {module}; expected "
                              "one of " + ", ".join(catalog.actions_for(module)))
