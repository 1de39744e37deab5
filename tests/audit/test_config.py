"""Audit settings resolve like every other setting, and bad values name their source."""

from __future__ import annotations

import pytest

from authz_server.process.config import ConfigError, load


def test_audit_defaults_to_batched_blocking() -> None:
    cfg = load(environ={})
    assert (cfg.audit_mode, cfg.audit_when_full, cfg.audit_queue) == ("batched", "block", 10_000)


def test_audit_settings_from_flags_and_environment() -> None:
    cfg = load({"audit_mode": "strict"}, environ={"AUTHZ_AUDIT_WHEN_FULL": "DROP",
                                                  "AUTHZ_AUDIT_QUEUE": "50"})
    assert (cfg.audit_mode, cfg.audit_when_full, cfg.audit_queue) == ("strict", "drop", 50)


@pytest.mark.parametrize(("var", "value"), [("AUTHZ_AUDIT_MODE", "sometimes"),
                                            ("AUTHZ_AUDIT_QUEUE", "0"),
                                            ("AUTHZ_AUDIT_FLUSH_INTERVAL", "0")])
def test_bad_audit_settings_are_refused_naming_the_source(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        load(environ={var: value})
