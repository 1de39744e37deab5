"""The edge every call crosses before the API: who is calling (authentication),
may they (scopes, organizations), within which limits; one validation per door."""
