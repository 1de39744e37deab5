"""Migration: moving an organization's CRM users to their own finance identities."""
