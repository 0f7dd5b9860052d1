"""app.py `Sentinel.scan`: a registered name that resolves outside the scope is never contacted; it is a finding."""

from __future__ import annotations

from pathlib import Path

from sentinel.app import Sentinel
from sentinel.config.settings import CollectorSettings, Settings
from sentinel.models import FindingStatus
from tests.support.registry_files import system_doc, write_registry_doc

NET = "127.78.0"


def test_out_of_scope_names_are_never_contacted(tmp_path: Path) -> None:
    """'localhost' is allowed as a name but resolves to 127.0.0.1, outside the CIDR scope: no connection, a finding."""
    lh = system_doc("lh", "LH", [{"url": "http://localhost:9/"}])
    reg = write_registry_doc(tmp_path / "r.yaml", [f"{NET}.0/24", "localhost"], lh)
    app = Sentinel(Settings(registry=reg, store=tmp_path / "s.db", collectors=CollectorSettings(connect_timeout=1)))
    outcome = app.scan()
    assert outcome.observations and all(o.status.value == "error" for o in outcome.observations)
    assert {o.data.get("error_kind") for o in outcome.observations} == {"out_of_scope"}
    found = app.store.list_findings(statuses=[FindingStatus.OPEN])
    assert {f.rule_id for f in found} == {"scope_target_in_scope"}
    assert app.store.sweeps()[0]["summary"] is not None
    app.close()
