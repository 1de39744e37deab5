"""Onboarding an organization from Books and CRM data (issue 12 item 1).

`authz org import EXPORTS` reads an organization's exports (the public APIs' JSON for
users, a documented JSON of Books' role editor, field access, approval settings and
contact owners: see `authz.onboarding.exports`) and writes its policy sources and its
directory file, deterministically, so that importing again after a change in Books shows
as a reviewable `authz policy diff`.
"""
