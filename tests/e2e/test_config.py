"""Configuration precedence: flags > environment > TOML file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from authz_server.process.config import DEFAULT_DB, ConfigError, load


def test_precedence(tmp_path: Path) -> None:
    f = tmp_path / "authz.toml"
    f.write_text('[server]\nlisten = "file:1"\ndb = "sqlite:///file.db"\ngrace = 3\n'
                 'log_level = "warning"\n')
    env = {"AUTHZ_LISTEN": "env:2", "AUTHZ_GRACE": "4"}
    cfg = load({"listen": "flag:3", "db": None}, env, f)
    assert cfg.listen == "flag:3"  # flag beats env and file
    assert cfg.grace == 4.0  # env beats file
    assert cfg.db == "sqlite:///file.db"  # file beats default
    assert cfg.log_level == "WARNING"
    assert load({}, {}).db == DEFAULT_DB


def test_config_file_from_environment(tmp_path: Path) -> None:
    f = tmp_path / "authz.toml"
    f.write_text('workers = 4\nwarm = false\n')
    cfg = load({}, {"AUTHZ_CONFIG": str(f)})
    assert (cfg.workers, cfg.warm) == (4, False)


@pytest.mark.parametrize(("flags", "env", "text", "needle"), [
    ({}, {}, "grace = -1\n", "grace"),
    ({}, {}, "lisen = 'x'\n", "lisen"),
    ({}, {}, "listen = \n", "authz.toml"),
    ({}, {"AUTHZ_WORKERS": "many"}, "", "AUTHZ_WORKERS"),
    ({"log_level": "LOUD"}, {}, "", "--log-level"),
])
def test_errors_name_their_source(tmp_path: Path, flags: dict[str, str], env: dict[str, str],
                                  text: str, needle: str) -> None:
    f = tmp_path / "authz.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load(flags, env, f)
