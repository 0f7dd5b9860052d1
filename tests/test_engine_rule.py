"""engine/rule.py, the typed rule schema: what `when:` may read, and Chinese text normalised from folded YAML."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sentinel.engine.rule import Rule
from tests.support.engine_lab import make_rule


def test_when_may_not_read_derived_fields_nor_guard_an_absence() -> None:
    with pytest.raises(ValidationError, match="derived"):
        make_rule(when={"field": "baseline.learning", "op": "eq", "value": False}, baseline={"field": "latency_ms"})
    with pytest.raises(ValidationError, match="absence"):
        make_rule(condition=None, absence={"after": "1h"}, when={"field": "reachable", "op": "eq", "value": True})


def test_chinese_text_is_normalised_for_folded_yaml() -> None:
    rule = Rule.model_validate(
        {
            "id": "port_x",
            "title": "Port open",
            "title_zh": "端口\n开放",
            "severity": "low",
            "category": "exposure",
            "observation": "port",
            "condition": {"field": "state", "op": "eq", "value": "open"},
            "remediation": "Close it.",
            "remediation_zh": "在 nginx 配置 server_tokens off; 后\n重新加载 配置。\n",
        }
    )
    assert rule.title_zh == "端口开放"
    assert rule.remediation_zh == "在 nginx 配置 server_tokens off; 后重新加载配置。"
