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

#: Record states before approval; anything else (approved, sent, paid, ...) is approved.
UNAPPROVED_STATES: Final[frozenset[str]] = frozenset({"draft", "pending_approval", "rejected"})
#: Record states the suite knows; Check rejects any other status.
RECORD_STATES: Final[frozenset[str]] = UNAPPROVED_STATES | frozenset(
    {
        "approved",
        "sent",
        "open",
        "partially_paid",
        "paid",
        "overdue",
        "void",
        "accepted",
        "declined",
        "invoiced",
        "closed",
        "active",
        "cancelled",
    }
)

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
