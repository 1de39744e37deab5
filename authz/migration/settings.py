"""What an organization's compiled policy says about migration: quota, permission-set
version, whether the phased release has reached it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from authz.migration import plan


@dataclass(frozen=True, slots=True)
class OrgSettings:
    """What the organization's compiled policy says about migration. The window start is
    not here: the server records the day the release reached the organization in the
    store (authz.store.orgmode); a date typed in organization.yaml is not read."""

    quota: int = plan.DEFAULT_QUOTA
    permission_set_version: int = 1
    effective_mode: str = "unified"  # "legacy": the phased release has not reached it
    mode_reason: str = ""

    @property
    def released(self) -> bool:
        """Whether the phased release of the unified mode has reached the organization."""
        return self.effective_mode == "unified"


SettingsSource = Callable[[str], OrgSettings]


def settings_from_manifest(manifest: Mapping[str, object]) -> OrgSettings:
    """OrgSettings from a compiled organization manifest (authz.engine OrgIndex.manifest)."""
    iu_set = manifest.get("integration_user_set")
    version = iu_set.get("version", 1) if isinstance(iu_set, dict) else 1
    quota = manifest.get("integration_user_quota", plan.DEFAULT_QUOTA)
    return OrgSettings(int(quota) if isinstance(quota, int) else plan.DEFAULT_QUOTA,
                       int(version), str(manifest.get("effective_mode", "unified")),
                       str(manifest.get("mode_reason", "")))
