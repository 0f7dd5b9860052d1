"""web/settings.py: web users must have distinct names and tokens."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sentinel.web.settings import WebSettings


def test_users_must_be_distinct() -> None:
    with pytest.raises(ValidationError, match="unique"):
        WebSettings.model_validate(
            {
                "users": [
                    {"name": "bob", "role": "owner", "department": "A", "token": "a"},
                    {"name": "bob", "role": "operator", "token": "b"},
                ]
            }
        )
    with pytest.raises(ValidationError, match="share a token"):
        WebSettings.model_validate(
            {"users": [{"name": "a", "role": "auditor", "token": "t"}, {"name": "b", "role": "operator", "token": "t"}]}
        )
