"""The audit trail: who was allowed to do what, as whom, under which policy."""
