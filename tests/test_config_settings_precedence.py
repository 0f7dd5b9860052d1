"""config/settings.py: defaults < file < SENTINEL_* environment < flags, and a bad file is refused at its lines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sentinel.config.settings import load_settings
from sentinel.errors import InputError


def test_settings_precedence(write_file: Callable[[str, str], Path]) -> None:
    cfg = write_file("s.yaml", "store: from-file.db\ncollectors: {connect_timeout: 7, retries: 2}\n")
    env = {"SENTINEL_STORE": "/env.db", "SENTINEL_COLLECTORS__CONNECT_TIMEOUT": "4"}
    s = load_settings(cfg, {"store": None}, env)
    assert str(s.store) == "/env.db" and s.collectors.connect_timeout == 4 and s.collectors.retries == 2
    s = load_settings(cfg, {"store": "/flag.db"}, env)
    assert str(s.store) == "/flag.db"
    bad = write_file("bad.yaml", "collectors:\n  connect_timeout: -1\n  typo: 1\n")
    with pytest.raises(InputError) as err:
        load_settings(bad, {}, {})
    assert {p.line for p in err.value.problems} == {2, 3}
