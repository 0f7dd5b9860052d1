"""Web integrity of one page (government-website tampering checks): a digest of the normalised page for
change detection, hidden links (暗链), sensitive keywords, and the external hosts of scripts and iframes.

The page is fetched through ScopedNetwork (bounded size, in-scope redirects only) and analysed by the
sans-IO `html_analysis` module. The keyword lists are plain text files users extend; paths come from
settings (`web_hidden_link_keywords`, `web_sensitive_keywords`), defaulting to the shipped
`rules/data/*.txt`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from sentinel.collectors.base import Probe, ProbeJob
from sentinel.collectors.html_analysis import KeywordSet, analyse_page, decode_html
from sentinel.collectors.http_fetch import describe_failure, scoped_get
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.offload import run_cpu
from sentinel.config.settings import ProbeOptions
from sentinel.errors import InputError, Problem
from sentinel.models import Observation
from sentinel.paths import shipped_rules_dir
from sentinel.registry.models import System

if TYPE_CHECKING:
    from sentinel.config.settings import CollectorSettings

EXCERPT_CHARS = 8000
#: pages up to this size are analysed on the event loop, larger ones in a worker process (`offload`)
INLINE_PAGE_BYTES = 4096
MAX_LINKS_REPORTED = 20
MAX_URL_CHARS = 300
MAX_HOSTS_REPORTED = 50


def default_keyword_file(name: str) -> Path:
    return shipped_rules_dir() / "data" / name


def load_keywords(path: Path) -> KeywordSet:
    """A keyword file, or an InputError naming the file (and line) that is wrong."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError([Problem(str(path), None, f"cannot read keyword file: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError([Problem(str(path), line, "keyword file is not UTF-8 text")]) from None
    return KeywordSet.from_text(text, str(path))


class WebIntegrityOptions(ProbeOptions):
    """`collectors.web_integrity`."""

    hidden_link_keywords: Path | None = Field(default=None, description="extra hidden-link (暗链) keywords")
    sensitive_keywords: Path | None = Field(default=None, description="extra sensitive keywords")
    page_bytes: int = Field(default=1_000_000, ge=16384, description="bytes of a page read and analysed")


class WebIntegrityProbe(Probe):
    name = "web_integrity"
    kind = "web_integrity"
    fields: ClassVar[Mapping[str, frozenset[str]]] = {
        "web_integrity": frozenset(
            {"url", "host", "error_kind", "status_code", "content_type", "final_url", "body_bytes", "body_truncated"}
            | {"page.title", "content.normalized_sha256", "content.normalized_text", "content.parse_truncated"}
            | {"links.count", "links.hidden", "links.hidden_count", "links.hidden_with_keywords"}
            | {"links.hidden_with_keywords_count", "links.hidden_keywords", "keywords.sensitive_found"}
            | {"keywords.sensitive_count", "scripts.external_hosts", "iframes.external_hosts"}
        )
    }
    Options = WebIntegrityOptions
    legacy_keys: ClassVar[Mapping[str, str]] = {
        "web_hidden_link_keywords": "hidden_link_keywords",
        "web_sensitive_keywords": "sensitive_keywords",
        "web_page_bytes": "page_bytes",
    }

    def __init__(self, settings: CollectorSettings) -> None:
        super().__init__(settings)
        self._keywords: tuple[KeywordSet, KeywordSet] | None = None

    @property
    def options(self) -> WebIntegrityOptions:
        return self.settings.probe_options(self.name, WebIntegrityOptions)

    def keywords(self) -> tuple[KeywordSet, KeywordSet]:
        """(hidden-link keywords, sensitive keywords), loaded once per probe instance."""
        if self._keywords is None:
            link_file = self.options.hidden_link_keywords
            sensitive_file = self.options.sensitive_keywords
            self._keywords = (
                load_keywords(Path(link_file) if link_file else default_keyword_file("hidden_link_keywords.txt")),
                load_keywords(
                    Path(sensitive_file) if sensitive_file else default_keyword_file("sensitive_keywords.txt")
                ),
            )
        return self._keywords

    def plan(self, system: System) -> Iterable[ProbeJob]:
        own = ",".join(sorted({e.hostname for e in system.endpoints}))
        for endpoint in system.endpoints:
            if endpoint.url is not None:
                yield ProbeJob(
                    self.name, system.id, endpoint.hostname, endpoint.url, url=endpoint.url, extra=(("own_hosts", own),)
                )

    def budget(self, job: ProbeJob) -> int:
        return 1 + self.settings.max_redirects

    async def run(self, job: ProbeJob, net: ScopedNetwork) -> list[Observation]:
        assert job.url is not None
        started = datetime.now(UTC)
        base: dict[str, Any] = {"url": job.url, "host": job.host}
        try:
            link_keywords, sensitive_keywords = self.keywords()
        except InputError as exc:
            return [self.observation(job, started, {**base, "error_kind": "internal"}, error=str(exc)[:300])]
        import aiohttp  # imported when a probe runs: the settings import this module only for its Options

        timeout = aiohttp.ClientTimeout(total=self.settings.http_timeout, sock_connect=self.settings.connect_timeout)
        limit = min(self.settings.max_body_bytes, self.options.page_bytes)
        try:
            page = await scoped_get(
                net, job.url, max_bytes=limit, timeout=timeout, max_redirects=self.settings.max_redirects
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # A backed-off target (circuit open) is "not probed", never a connection failure.
            kind, reason = describe_failure(exc)
            return [self.observation(job, started, {**base, "error_kind": kind}, error=f"{job.url}: {reason}")]
        content_type = page.headers.get("content-type", "")
        if page.out_of_scope_redirect is not None:
            data = {**base, "error_kind": "out_of_scope", "status_code": page.status}
            where = page.out_of_scope_redirect[:MAX_URL_CHARS]
            reason = f"{page.url[:MAX_URL_CHARS]}: redirects to {where}, outside the declared scope; not followed"
            return [self.observation(job, started, data, error=reason)]
        if page.status != 200 or (content_type and "html" not in content_type.lower()):
            # An error page or a non-HTML answer says nothing about the page's content: report it, no facts.
            data = {**base, "error_kind": "protocol", "status_code": page.status, "content_type": content_type[:100]}
            return [
                self.observation(
                    job,
                    started,
                    data,
                    error=f"{page.url[:MAX_URL_CHARS]}: HTTP {page.status} {content_type[:60]}".strip(),
                )
            ]
        own_hosts = dict(job.extra).get("own_hosts", job.host).split(",")
        args = (decode_html(page.body, content_type), page.url, own_hosts, link_keywords, sensitive_keywords)
        if len(page.body) <= INLINE_PAGE_BYTES:  # a few milliseconds at most: less than handing it over costs
            analysis = analyse_page(*args, EXCERPT_CHARS)
        else:  # ~1.3 ms of CPU per KB: in a worker process, so the event loop keeps running meanwhile
            analysis = await run_cpu(analyse_page, *args, EXCERPT_CHARS)
        hidden = analysis.hidden_links
        with_keywords = analysis.hidden_links_with_keywords
        data = {
            **base,
            "final_url": page.url[:MAX_URL_CHARS],
            "status_code": page.status,
            "body_bytes": len(page.body),
            "body_truncated": page.truncated,
            "page.title": analysis.title[:200],
            "content.normalized_sha256": analysis.normalized_sha256,
            "content.normalized_text": analysis.normalized_text,
            "content.parse_truncated": analysis.truncated,
            "links.count": len(analysis.links),
            "links.hidden": [link.as_dict() for link in hidden[:MAX_LINKS_REPORTED]],
            "links.hidden_count": len(hidden),
            "links.hidden_with_keywords": [link.as_dict() for link in with_keywords[:MAX_LINKS_REPORTED]],
            "links.hidden_with_keywords_count": len(with_keywords),
            "links.hidden_keywords": sorted({k for link in with_keywords for k in link.keywords})[:MAX_LINKS_REPORTED],
            "keywords.sensitive_found": list(analysis.sensitive_found[:MAX_LINKS_REPORTED]),
            "keywords.sensitive_count": len(analysis.sensitive_found),
            "scripts.external_hosts": list(analysis.script_hosts[:MAX_HOSTS_REPORTED]),
            "iframes.external_hosts": list(analysis.iframe_hosts[:MAX_HOSTS_REPORTED]),
        }
        return [self.observation(job, started, data)]
