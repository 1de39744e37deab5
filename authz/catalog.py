"""The finance suite's vocabulary: products, modules, actions.

This is the suite's own catalogue (DOMAIN.md §3), not something an organization
edits, so it lives in code; the policy sources are validated against it.
"""

from __future__ import annotations

from typing import Final

BOOKS: Final = "books"
SUBSCRIPTIONS: Final = "subscriptions"
PRODUCTS: Final[tuple[str, ...]] = (BOOKS, SUBSCRIPTIONS)

#: Actions on transaction and contact records.
RECORD_ACTIONS: Final[tuple[str, ...]] = (
    "view",
    "create",
    "edit",
    "delete",
    "submit",
    "approve",
    "final_approve",
    "reject",
    "edit_approved",
    "delete_approved",
    "email",
    "mark_as_sent",
    "convert_to_invoice",
    "convert_to_sales_order",
    "convert_to_bill",
    "record_payment",
    "write_off",
    "export",
    "view_protected_data",
)
#: Actions on reports and dashboards.
REPORT_ACTIONS: Final[tuple[str, ...]] = ("view", "export", "schedule", "manage")
#: Actions on the settings module.
SETTINGS_ACTIONS: Final[tuple[str, ...]] = ("view", "manage")

_REPORTING = ("reports", "dashboard")

BOOKS_MODULES: Final[tuple[str, ...]] = (
    "customers",
    "vendors",
    "items",
    "estimates",
    "sales_orders",
    "invoices",
    "retainer_invoices",
    "credit_notes",
    "payments_received",
    "purchase_orders",
    "bills",
    "payments_made",
    "vendor_credits",
    "expenses",
    "timesheets",
    "reports",
    "dashboard",
    "settings",
)
SUBSCRIPTIONS_MODULES: Final[tuple[str, ...]] = (
    "customers",
    "plans",
    "subscriptions",
    "quotes",
    "invoices",
    "payments",
    "credit_notes",
    "reports",
    "dashboard",
)
MODULES: Final[dict[str, tuple[str, ...]]] = {
    BOOKS: BOOKS_MODULES,
    SUBSCRIPTIONS: SUBSCRIPTIONS_MODULES,
}
ALL_MODULES: Final[frozenset[str]] = frozenset(BOOKS_MODULES) | frozenset(SUBSCRIPTIONS_MODULES)
ALL_ACTIONS: Final[frozenset[str]] = (
    frozenset(RECORD_ACTIONS) | frozenset(REPORT_ACTIONS) | frozenset(SETTINGS_ACTIONS)
)

#: Approval actions: who may take them depends on the approval flow, not only the role.
APPROVAL_ACTIONS: Final[frozenset[str]] = frozenset({"approve", "final_approve", "reject"})
#: Actions that create or change a record and so may leave it pending approval.
WRITE_ACTIONS: Final[frozenset[str]] = frozenset({"create", "edit"})
#: Actions on an approved record that need the matching "after approval" permission.
AFTER_APPROVAL: Final[dict[str, str]] = {"edit": "edit_approved", "delete": "delete_approved"}

#: Record states before approval; every later state (approved, sent, viewed, paid, ...)
#: is past approval.
UNAPPROVED_STATES: Final[frozenset[str]] = frozenset({"draft", "pending_approval", "rejected"})
#: States of every record that goes through approval (DOMAIN.md §3).
APPROVAL_STATES: Final[tuple[str, ...]] = ("draft", "pending_approval", "approved", "rejected")
_INVOICE = ("sent", "viewed", "unpaid", "overdue", "partially_paid", "paid", "void",
            "written_off")
_QUOTE = ("sent", "viewed", "accepted", "declined", "expired", "invoiced")
_CONTACT = ("active", "inactive")
#: Each module's normal lifecycle after approval, by module name (a name shared by Books
#: and Subscriptions has the union of both products' states). From the products' API
#: status filters; a real client sends these, so Check accepts any of them.
LIFECYCLES: Final[dict[str, tuple[str, ...]]] = {
    "customers": _CONTACT,
    "vendors": _CONTACT,
    "items": _CONTACT,
    "estimates": _QUOTE,
    "quotes": _QUOTE,
    "sales_orders": ("open", "confirmed", "partially_invoiced", "invoiced", "partially_shipped",
                     "shipped", "overdue", "on_hold", "closed", "void"),
    "invoices": (*_INVOICE, "pending"),
    "retainer_invoices": ("sent", "viewed", "partially_drawn", "drawn", "paid", "void"),
    "credit_notes": ("open", "closed", "refunded", "void"),
    "payments_received": ("recorded", "partially_refunded", "refunded", "failed"),
    "purchase_orders": ("open", "issued", "partially_received", "received", "partially_billed",
                        "billed", "closed", "cancelled"),
    "bills": ("open", "overdue", "partially_paid", "paid", "void"),
    "payments_made": ("recorded", "refunded"),
    "vendor_credits": ("open", "closed", "void"),
    "expenses": ("unbilled", "non_billable", "invoiced", "reimbursed"),
    "timesheets": ("unbilled", "invoiced"),
    "plans": _CONTACT,
    "subscriptions": ("future", "trial", "live", "unpaid", "dunning", "non_renewing", "paused",
                      "cancelled", "cancelled_from_dunning", "expired", "creation_failed"),
    "payments": ("success", "failure", "partially_refunded", "refunded"),
}


def states_of(module: str) -> tuple[str, ...]:
    """Every state a record of the module can be in (empty for reports, dashboards and
    settings, which have no records)."""
    life = LIFECYCLES.get(module)
    return (*APPROVAL_STATES, *life) if life is not None else ()


#: States past approval, per module: approved, then the module's own lifecycle. Any other
#: state (draft, none given, or another module's, such as "accepted" on an invoice) counts
#: as not approved: never allow for lack of information.
PAST_APPROVAL: Final[dict[str, frozenset[str]]] = {
    m: frozenset(("approved", *life)) for m, life in LIFECYCLES.items()}
APPROVED_ONLY: Final[frozenset[str]] = frozenset({"approved"})

#: Record states some module knows; Check refuses any other status, naming it.
RECORD_STATES: Final[frozenset[str]] = frozenset(
    s for m in LIFECYCLES for s in states_of(m))

#: Actions blocked until a record is approved, per module (DOMAIN.md §3).
BLOCKED_UNTIL_APPROVED: Final[dict[str, tuple[str, ...]]] = {
    "invoices": ("mark_as_sent", "email", "record_payment", "write_off"),
    "estimates": ("mark_as_sent", "email", "convert_to_invoice", "convert_to_sales_order"),
    "sales_orders": ("convert_to_invoice", "email"),
    "purchase_orders": ("convert_to_bill",),
}

FIELD_ACCESS: Final[tuple[str, ...]] = ("hidden", "read_only", "read_write")
"""Field access levels, weakest first: a user with several roles gets the strongest."""

DATA_CENTRES: Final[tuple[str, ...]] = ("US", "EU", "IN", "AU", "JP", "CA", "SA", "UK", "CN")
EDITIONS: Final[tuple[str, ...]] = ("free", "standard", "professional", "premium", "enterprise")


def actions_for(module: str) -> tuple[str, ...]:
    """The actions that exist on a module."""
    if module in _REPORTING:
        return REPORT_ACTIONS
    if module == "settings":
        return SETTINGS_ACTIONS
    return RECORD_ACTIONS


def products_with(module: str) -> tuple[str, ...]:
    """The products that have a module, in the catalogue's order."""
    return tuple(p for p in PRODUCTS if module in MODULES[p])
