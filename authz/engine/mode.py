"""Legacy or unified (DOMAIN.md §4 step 1, §6, §7): one answer for Check, ListFilter and
Attribute.

An organization is unified only when the phased release has reached it (its compiled
policy says so) and the store records it as unified (its migration saved, its window
ended, or it signed up unified). Until then it keeps the legacy behaviour, reported as
such: nobody is locked out during the window.
"""

from __future__ import annotations

from authz.directory import DirectorySnapshot
from authz.engine.index import OrgIndex


def legacy_reason(org: OrgIndex, snap: DirectorySnapshot) -> str | None:
    """Why the organization is in legacy mode, or None when it is unified."""
    if org.effective_mode != "unified":
        return org.mode_reason
    mode = snap.mode
    if mode is not None and not mode.unified:
        return mode.legacy_reason()
    return None
