"""collectors/vulnerable_versions.py: version ordering, the shipped catalogue, and catalogue mistakes at FILE:LINE."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel.collectors.vulnerable_versions import Version, default_catalogue_path, load_catalogue
from sentinel.errors import InputError


def test_version_ordering() -> None:
    v = Version.parse
    assert v("8.9p1") < v("9.8p1") < v("9.8p2")
    assert v("1.3.5") < v("1.3.5a") < v("1.3.5.1")
    assert v("7.0.15") < v("7.2.11") and not v("7.2.11") < v("7.2.11")
    assert v("2022.83") == v("2022.83")
    with pytest.raises(ValueError):
        v("beta")


def test_shipped_catalogue_loads_and_matches() -> None:
    catalogue = load_catalogue(default_catalogue_path())
    assert [m["cves"] for m in catalogue.match("openssh", "9.6p1")] == [["CVE-2024-6387"]]
    assert catalogue.match("openssh", "9.8p1") == []
    assert [m["cves"] for m in catalogue.match("vsftpd", "2.3.4")] == [["CVE-2011-2523"]]
    assert catalogue.match("vsftpd", "3.0.3") == []
    assert catalogue.match("redis", "not-a-version") == []
    assert catalogue.match(None, "1.0") == []


def test_catalogue_mistakes_are_reported_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "vulnerable_versions.yaml"
    bad.write_text(
        "entries:\n"
        "  - product: openssh\n"
        "    fixed: '9.8p1'\n"
        "    cves: [CVE-2024-6387]\n"
        "  - product: redis\n"
        "    fixed: 'soon'\n"
        "    cves: [CVE-2025-49844]\n"
        "  - product: exim\n"
        "    cves: [not-a-cve]\n"
        "    versions: ['4.91']\n"
        "    colour: red\n"
    )
    with pytest.raises(InputError) as caught:
        load_catalogue(bad)
    shown = [str(p) for p in caught.value.problems]
    assert any(s.startswith(f"{bad}:6: ") and "'soon' is not a version" in s for s in shown)
    assert any(s.startswith(f"{bad}:9: ") and "not a CVE id" in s for s in shown)
    assert any(s.startswith(f"{bad}:11: ") and "unknown key 'colour'" in s for s in shown)

    twice = tmp_path / "twice.yaml"
    entry = "  - {product: x, fixed: '2', cves: [CVE-2020-0001]}\n"
    twice.write_text("entries:\n" + entry + entry)
    with pytest.raises(InputError, match=r"twice.yaml:3: entry 2 repeats entry 1"):
        load_catalogue(twice)
    with pytest.raises(InputError, match="must be a mapping"):
        (tmp_path / "list.yaml").write_text("- 1\n")
        load_catalogue(tmp_path / "list.yaml")
