"""The city's estate pages (sentinel/web/estate.py) over the shared cluster: who sees which sites, the figures and
pages at estate scale (1,354 systems over 12 sites), a dead cluster, and the page in real headless Chromium.

The web view runs on loopback (aiohttp) and reads, with the official client, an Elasticsearch double seeded by real
instances shipping (three sites) or by the sink's `finding_document` (bench/estate_view.py's estate).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from pydantic import ValidationError

from bench.estate_view import SILENT_SITE, SITES, Estate, build_estate, ship, users, web_app
from sentinel.config.settings import Settings
from sentinel.errors import InputError
from sentinel.findings.policy import FindingsSettings
from sentinel.models import Finding
from sentinel.registry.models import Registry
from sentinel.sinks.elasticsearch.estate import EstateReader
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings
from sentinel.store import SqliteStore
from sentinel.web.auth import Authenticator, UserSettings
from sentinel.web.estate import estate_reader
from sentinel.web.server import WebContext, add_web_routes
from sentinel.web.settings import WebSettings
from tests.es_double import EsDouble
from tests.netns import require
from tests.support import web_site
from tests.support.web_site import serving
from tests.test_sinks_elasticsearch_estate import ship_instances

HOST = "127.79.14.1"
CITY, HEXI, OWNER = "city-operator", "hexi-operator", "hexi-owner"


def call(url: str, token: str) -> tuple[int, Any]:
    status, answer, _ = web_site.call(url, token)
    return status, answer


def rows(html: str) -> list[str]:
    """The sites of /estate's table, in page order."""
    return re.findall(r'<tr class="site-row" data-site="([^"]+)"', html)


@dataclass
class Site:
    base: str
    double: EsDouble
    registry: Registry
    found: dict[str, list[Finding]]


@pytest.fixture(scope="module")
def three_sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The city and two districts shipped by real instances; the city's web view reads them all."""
    folder = tmp_path_factory.mktemp("three")
    with EsDouble() as double:
        registry, found = ship_instances(folder, double)
        reader = EstateReader(ElasticsearchSettings.model_validate({"url": double.url}), sites=list(found))
        store = SqliteStore(folder / "city-web.db")
        app = web_app(store, registry, reader)
        try:
            with serving(app, HOST) as base:
                yield Site(base, double, registry, found)
        finally:
            store.close()


@dataclass
class Scale:
    base: str
    double: EsDouble
    estate: Estate
    figures: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def at_scale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scale]:
    folder = tmp_path_factory.mktemp("scale")
    estate = build_estate(1354)
    with EsDouble() as double:
        client = Elasticsearch(double.url)
        ship(client, estate)
        client.close()
        reader = EstateReader(ElasticsearchSettings.model_validate({"url": double.url}), sites=list(SITES))
        store = SqliteStore(folder / "city-web.db")
        try:
            with serving(web_app(store, estate.registry, reader), HOST) as base:
                yield Scale(base, double, estate, estate.figures(FindingsSettings()))
        finally:
            store.close()


def test_city_operator_sees_every_site_and_a_district_only_its_own(three_sites: Site) -> None:
    base, found = three_sites.base, three_sites.found
    status, html = call(f"{base}/estate", CITY)
    assert status == 200 and sorted(rows(html)) == ["city", "hexi-district", "nanhu-district"]
    assert 'href="/estate/findings?site=hexi-district&amp;lang=zh"' in html and "全市态势" in html
    status, mine = call(f"{base}/estate", HEXI)
    assert status == 200 and rows(mine) == ["hexi-district"]
    status, api = call(f"{base}/api/estate", CITY)
    assert status == 200 and {s["site"] for s in api["sites"]} == set(found)
    counts = {s["site"]: s["active_total"] for s in api["sites"]}
    assert counts == {site: sum(1 for f in fs if f.status.is_active) for site, fs in found.items()}
    status, district = call(f"{base}/api/estate", HEXI)
    assert status == 200 and [s["site"] for s in district["sites"]] == ["hexi-district"]
    assert district["totals"]["active_total"] == counts["hexi-district"]
    # another district's findings: 403 for the district's user, on the API and on the page
    status, refused = call(f"{base}/api/estate/findings?site=city", HEXI)
    assert status == 403 and "site 'city'" in refused["error"]
    assert call(f"{base}/estate/findings?site=nanhu-district", HEXI)[0] == 403
    status, listed = call(f"{base}/api/estate/findings?status=all", HEXI)
    assert status == 200 and {f["site"] for f in listed["findings"]} == {"hexi-district"}
    assert listed["total"] == len(found["hexi-district"]) and listed["by_site"] == {"hexi-district": listed["total"]}
    # the city's list is grouped by site: a count per site, each a link to that site's list
    status, page = call(f"{base}/estate/findings", CITY)
    assert status == 200 and sorted(re.findall(r'class="by-site" data-site="([^"]+)"', page)) == sorted(found)
    assert call(f"{base}/api/estate/findings?site=Not%20a%20site", CITY)[0] == 400
    assert call(f"{base}/api/estate", "")[0] == 401


def test_cluster_down_gives_a_clear_page_and_comes_back(three_sites: Site) -> None:
    base, double = three_sites.base, three_sites.double
    double.stop()
    try:
        status, html = call(f"{base}/estate", CITY)
        assert status == 503 and "Elasticsearch 集群无法访问" in html and 'id="down-since"' in html
        assert double.url in html and "Traceback" not in html
        status, html = call(f"{base}/estate/findings?site=city&lang=en", CITY)
        assert status == 503 and "The Elasticsearch cluster cannot be read" in html and "since" in html
        status, api = call(f"{base}/api/estate/findings", HEXI)
        assert status == 503 and api["unreachable_since"] and "cannot be read since" in api["error"]
        first = api["unreachable_since"]
        assert call(f"{base}/api/estate", CITY)[1]["unreachable_since"] == first  # since the first failure
    finally:
        double.start()
    assert call(f"{base}/api/estate", CITY)[0] == 200


def test_figures_and_pages_are_right_at_estate_scale(at_scale: Scale) -> None:
    base, estate, figures = at_scale.base, at_scale.estate, at_scale.figures
    assert len(estate.registry.systems) == 1354 and 2_000 < len(estate.findings) < 4_000
    before = len(at_scale.double.requests)
    status, api = call(f"{base}/api/estate", CITY)
    assert status == 200 and len(at_scale.double.requests) - before == 3  # aggregations, not documents
    got = {s["site"]: s for s in api["sites"]}
    assert set(got) == set(SITES)
    for site, want in figures.items():
        row = got[site]
        assert {k: v for k, v in row["active"].items() if v} == want["active"], site
        assert (row["active_total"], row["systems_affected"]) == (want["active_total"], want["systems_affected"])
        assert (row["overdue"], row["stale"]) == (want["overdue"], want["stale"]), site
        assert row["silent"] == (site == SILENT_SITE) and row["shipped"]
    assert api["sites"][0]["site"] == SILENT_SITE  # silent first, then worst
    ranked = [(s["active"]["critical"], s["active"]["high"]) for s in api["sites"][1:]]
    assert ranked == sorted(ranked, reverse=True)
    assert api["totals"]["active_total"] == sum(w["active_total"] for w in figures.values())
    assert api["totals"]["systems_affected"] == sum(w["systems_affected"] for w in figures.values())
    # every finding of every status, page by page and by cursor: each once, and the totals per site
    everyone = {(f.site, f.id) for f in estate.findings}
    seen: list[tuple[str, str]] = []
    page, by_site = 1, {}
    while True:
        status, body = call(f"{base}/api/estate/findings?status=all&limit=1000&page={page}", CITY)
        assert status == 200 and body["total"] == len(estate.findings)
        seen += [(f["site"], f["id"]) for f in body["findings"]]
        by_site = body["by_site"]
        if page * 1000 >= body["total"]:
            break
        page += 1
    assert len(seen) == len(set(seen)) == len(everyone) and set(seen) == everyone
    assert by_site == {site: want["all"] for site, want in figures.items()}
    cursor, walked = "", []
    while True:
        status, body = call(f"{base}/api/estate/findings?status=all&limit=700{cursor}", CITY)
        walked += [(f["site"], f["id"]) for f in body["findings"]]
        if body["after"] is None:
            break
        cursor = f"&after={body['after']}"
    assert walked == seen  # the same order: most severe first, newest first
    # the HTML list, page 3 of the active findings
    status, html = call(f"{base}/estate/findings?page=3", CITY)
    active = sum(w["active_total"] for w in figures.values())
    assert status == 200 and f'<b id="count">{active}</b> (101–150)' in html
    assert html.count("<tr data-id=") == 50 and f"页 3 / {(active + 49) // 50}" in html
    status, html = call(f"{base}/estate/findings?page=300&per_page=50", CITY)
    assert status == 400 and "past the first 10,000 findings" in html
    # the alerts page's filters: tier, age (first seen within), category
    status, body = call(f"{base}/api/estate/findings?tier=street&age=7d&category=crypto&limit=1", CITY)
    week = estate.now - timedelta(days=7)
    street = [
        f
        for f in estate.findings
        if f.status.is_active and f.first_seen >= week and f.category == "crypto"
        if estate.registry.by_id[f.system_id].tier.value == "street"
    ]
    assert status == 200 and body["total"] == len(street) > 0
    # a district's owner: their site and their department only
    status, body = call(f"{base}/api/estate/findings?limit=1000", OWNER)
    mine = [f for f in estate.findings if f.site == "hexi-district" and f.status.is_active]
    mine = [f for f in mine if estate.registry.by_id[f.system_id].owner.department == "河西区行政审批局"]
    assert status == 200 and body["total"] == len(mine) > 0
    assert {(f["site"], f["department"]) for f in body["findings"]} == {("hexi-district", "河西区行政审批局")}
    status, owner_view = call(f"{base}/api/estate", OWNER)
    assert [s["site"] for s in owner_view["sites"]] == ["hexi-district"]
    assert owner_view["sites"][0]["active_total"] == len(mine)


def test_estate_page_in_headless_chromium(at_scale: Scale) -> None:
    chromium = shutil.which("chromium")
    require(chromium is not None, "needs Debian's chromium (installed by .ci/setup)")
    from playwright.sync_api import sync_playwright

    base, figures = at_scale.base, at_scale.figures
    shots = Path(__file__).resolve().parent.parent / "bench" / "out"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            web_site.sign_in(page, base, CITY)
            page.goto(f"{base}/estate?lang=en")
            assert page.locator("#estate-sites tr.site-row").count() == len(SITES)
            first = page.locator("#estate-sites tr.site-row").first
            assert first.get_attribute("data-site") == SILENT_SITE and "Silent" in first.inner_text()
            hexi = page.locator('#estate-sites tr.site-row[data-site="hexi-district"]')
            assert hexi.locator("td.n-total").inner_text() == str(figures["hexi-district"]["active_total"])
            total = sum(w["active_total"] for w in figures.values())
            assert page.inner_text("#n-active") == str(total)
            page.screenshot(path=str(shots / "web-estate.png"), full_page=True)
            hexi.locator("a.site-link").click()
            page.wait_for_url(re.compile(r".*/estate/findings\?site=hexi-district.*"))
            assert page.inner_text("#count") == str(figures["hexi-district"]["active_total"])
            listed = page.locator("#findings tr[data-id]")
            assert listed.count() == 50
            assert {listed.nth(i).get_attribute("data-site") for i in range(listed.count())} == {"hexi-district"}
            page.select_option("#f-severity", "critical")
            page.click("#apply")
            critical = figures["hexi-district"]["active"].get("critical", 0)
            assert page.inner_text("#count") == str(critical)
            page.goto(f"{base}/estate?lang=zh")
            assert page.locator("h1").inner_text() == "全市态势"
            page.close()
            district = browser.new_page()
            web_site.sign_in(district, base, HEXI)
            district.goto(f"{base}/estate")
            assert district.locator("#estate-sites tr.site-row").count() == 1
            district.screenshot(path=str(shots / "web-estate-district.png"), full_page=True)
        finally:
            browser.close()


# -- settings and wiring -------------------------------------------------------------------------------------


def test_estate_settings_and_user_sites_are_validated(tmp_path: Path) -> None:
    assert WebSettings().estate == "store" and estate_reader(Settings(store=tmp_path / "s.db")) is None
    with pytest.raises(ValidationError, match="estate"):
        WebSettings.model_validate({"estate": "kibana"})
    with pytest.raises(ValidationError, match="not a valid site"):
        WebSettings.model_validate({"estate": "elasticsearch", "estate_sites": ["Hexi District"]})
    with pytest.raises(ValidationError, match="each site once"):
        WebSettings.model_validate({"estate_sites": ["city", "city"]})
    with pytest.raises(ValidationError, match="name at least one site"):
        UserSettings.model_validate({"name": "d", "role": "operator", "token": "t", "sites": []})
    with pytest.raises(ValidationError, match="not a valid site"):
        UserSettings.model_validate({"name": "d", "role": "operator", "token": "t", "sites": ["河西区"]})
    dora = Authenticator([users()[1]]).by_token(HEXI)
    assert (
        dora is not None
        and dora.sites == ("hexi-district",)
        and dora.sees_site("hexi-district")
        and not dora.sees_site("city")
    )
    with pytest.raises(InputError, match=r"web\.estate: elasticsearch reads the shared cluster"):
        estate_reader(Settings(store=tmp_path / "s.db", web={"estate": "elasticsearch"}))
    configured = Settings(
        store=tmp_path / "s.db",
        web={"estate": "elasticsearch", "estate_sites": ["city", "hexi-district"], "estate_silent_minutes": 30},
        sinks={"elasticsearch": {"url": "http://127.0.0.1:9"}},
    )
    reader = estate_reader(configured)
    assert reader is not None and reader.expected_sites == ("city", "hexi-district")
    assert reader.silent_after.total_seconds() == 1800
    reader.close()


def test_no_estate_pages_without_an_estate_source(tmp_path: Path) -> None:
    from aiohttp import web

    store = SqliteStore(tmp_path / "s.db")
    app = web.Application()
    add_web_routes(app, WebContext(store, web_site.FINDINGS_REGISTRY, Authenticator(users())))
    try:
        with serving(app, HOST) as base:
            assert call(f"{base}/estate", CITY)[0] == 404 and call(f"{base}/api/estate", CITY)[0] == 404
            assert call(f"{base}/alerts", CITY)[0] == 200  # the single site's own pages, from its store
    finally:
        store.close()
