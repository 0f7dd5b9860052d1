"""Sans-IO analysis of one HTML page: hidden links (暗链), keywords, external script/iframe hosts, and a
normalised text whose digest stays put when only dynamic parts (dates, tokens, counters) change.

Parser: the standard library's `html.parser`. It adds no dependency, never raises on broken markup (the
pages we read come from possibly compromised servers), and is fast enough for the bounded bodies the
probes feed it. It builds no DOM, so this module builds a small bounded tree itself and evaluates a
subset of CSS on it: inline styles, and `<style>` rules whose selectors are tag/#id/.class compounds
joined by descendant or child combinators (enough for the way hidden-link kits hide their blocks).
Links written by `document.write('...')` and blocks hidden by `getElementById(..).style.display='none'`
are handled too, since both are common in injected spam. Not handled: text coloured like its
background, hiding done by external stylesheets or by scripts of other shapes.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from sentinel.errors import InputError, Problem
from sentinel.textdiff import diff_lines  # noqa: F401 -- re-exported for existing callers; shared with the engine

MAX_NODES = 50_000
MAX_DEPTH = 256
MAX_TEXT_CHARS = 2_000_000
MAX_WRITE_FRAGMENTS = 32
MAX_KEYWORD_CHARS = 100
MAX_CSS_RULES = 20_000
MAX_LINKS = 5_000  # links analysed per page; the rest are counted, not styled

_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
        "keygen",
        "frame",
        "basefont",
        "isindex",
    ]
)
_NOT_RENDERED = {"head": "inside <head>", "template": "inside <template>", "noscript": "inside <noscript>"}
_SKIP_TEXT = frozenset({"script", "style", "template", "head", "title", "noscript"})


# -- keywords ------------------------------------------------------------------------------------------------
class KeywordSet:
    """Case-insensitive keywords compiled into one pattern; short ASCII words match only as words.

    A short ASCII keyword ("bet", "xpj") must not sit inside a longer word ("better", "alphabet"), but may
    touch digits and punctuation ("bet365", "xpj888.com"); CJK keywords and ASCII keywords of 6 or more
    letters match anywhere.
    """

    def __init__(self, keywords: Iterable[str]) -> None:
        self.keywords = tuple(sorted({k.strip().lower() for k in keywords if k.strip()}, key=lambda k: (-len(k), k)))
        parts = []
        for kw in self.keywords:
            escaped = re.escape(kw)
            if kw.isascii() and len(kw) < 6 and kw[0].isalpha():
                escaped = rf"(?<![a-z]){escaped}(?![a-z])"
            parts.append(escaped)
        self._pattern = re.compile("|".join(parts), re.IGNORECASE) if parts else None

    @classmethod
    def from_text(cls, text: str, source: str) -> KeywordSet:
        """One keyword per line; `#` starts a comment; blank lines are ignored."""
        problems: list[Problem] = []
        words: list[str] = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if len(line) > MAX_KEYWORD_CHARS:
                problems.append(Problem(source, number, f"keyword longer than {MAX_KEYWORD_CHARS} characters"))
            elif any(ord(c) < 32 for c in line):
                problems.append(Problem(source, number, "keyword contains a control character"))
            else:
                words.append(line)
        if problems:
            raise InputError(problems)
        return cls(words)

    def find(self, *texts: str) -> list[str]:
        """The keywords that occur in any of the texts, sorted."""
        if self._pattern is None:
            return []
        found = {m.group(0).lower() for text in texts if text for m in self._pattern.finditer(text)}
        return sorted(found)

    def __len__(self) -> int:
        return len(self.keywords)


# -- a small bounded tree ------------------------------------------------------------------------------------
@dataclass(eq=False, slots=True)
class Node:
    tag: str
    attrs: dict[str, str]
    parent: Node | None
    children: list[Node | str] = field(default_factory=list)
    hidden_by_script: bool = False

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").lower().split())

    def ancestors(self) -> Iterator[Node]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def text(self, limit: int = 400) -> str:
        """Collapsed descendant text, bounded (iterative: hostile pages nest deeply)."""
        out: list[str] = []
        size = 0
        stack: list[Node | str] = [self]
        while stack and size < limit:
            item = stack.pop()
            if isinstance(item, str):
                out.append(item)
                size += len(item)
            elif item.tag not in ("script", "style"):
                stack.extend(reversed(item.children))
        return " ".join(" ".join(out).split())[:limit]


class _TreeBuilder(HTMLParser):
    def __init__(self, root: Node) -> None:
        super().__init__(convert_charrefs=True)
        self.root = root
        self.stack: list[Node] = [root]
        self.nodes = 0
        self.text_chars = 0
        self.truncated = False
        self.scripts: list[Node] = []
        self.styles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._start(tag, attrs):
            self.stack.pop()

    def _start(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        """Add an element; True if it was pushed as the new open element."""
        if self.nodes >= MAX_NODES:
            self.truncated = True
            return False
        self.nodes += 1
        if tag == "a":  # as browsers do: an <a> start tag closes any open <a> (anchors never nest)
            self.handle_endtag("a")
        node = Node(tag, {k.lower(): (v or "") for k, v in attrs[:64]}, self.stack[-1])
        self.stack[-1].children.append(node)
        if tag == "script":
            self.scripts.append(node)
        if tag not in _VOID and len(self.stack) < MAX_DEPTH:
            self.stack.append(node)
            return True
        return False

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        if self.text_chars >= MAX_TEXT_CHARS:
            self.truncated = True
            return
        self.text_chars += len(data)
        current = self.stack[-1]
        if current.tag == "style":
            self.styles.append(data)
        current.children.append(data)


def _defuse(html: str) -> str:
    """Escape every `<` after the last `>`: a tag still open at the end of input is dropped by browsers
    anyway, and `html.parser` rescans such a tail once per `<` in it (quadratic: 60 KB of `<a ` took 20 s)."""
    cut = html.rfind(">")
    tail = html[cut + 1 :]
    return html if "<" not in tail else html[: cut + 1] + tail.replace("<", "&lt;")


def _parse_into(root: Node, html: str) -> _TreeBuilder:
    builder = _TreeBuilder(root)
    builder.feed(_defuse(html))
    builder.close()
    return builder


# -- CSS -------------------------------------------------------------------------------------------------------
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_BRACE = re.compile(r"[{}]")
_COMPOUND = re.compile(r"^([a-z][a-z0-9]*|\*)?((?:[#.][\w-]+)*)$", re.I)
_LENGTH = re.compile(r"^(-?\d*\.?\d+)\s*(px|em|rem|pt|%|vw|vh|ex|ch)?$")
_UNIT_PX = {"px": 1.0, "em": 16.0, "rem": 16.0, "pt": 1.33, "vw": 10.0, "vh": 10.0, "ex": 8.0, "ch": 8.0, "%": 0.0}

Compound = tuple[str | None, str | None, frozenset[str]]


def parse_declarations(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.partition(":")
        if sep:
            out[name.strip().lower()] = value.replace("!important", "").strip().lower()
    return out


def _compound(text: str) -> Compound | None:
    m = _COMPOUND.match(text)
    if m is None or not text:
        return None
    tag = m.group(1).lower() if m.group(1) and m.group(1) != "*" else None
    ident = None
    classes: set[str] = set()
    for piece in re.findall(r"[#.][\w-]+", m.group(2)):
        if piece[0] == "#":
            ident = piece[1:]
        else:
            classes.add(piece[1:].lower())
    return tag, ident, frozenset(classes)


def _css_blocks(css: str) -> Iterator[tuple[str, str]]:
    """(selector text, declarations) of each innermost `{...}` block, in one linear pass (no backtracking)."""
    last = 0
    selector: str | None = None
    for brace in _BRACE.finditer(css):
        if brace.group() == "{":
            selector = css[last : brace.start()]
        elif selector is not None:
            yield selector, css[last : brace.start()]
            selector = None
        last = brace.end()


def parse_stylesheet(css: str) -> list[tuple[list[Compound], dict[str, str]]]:
    """Rules with supported selectors only; anything fancier (pseudo-classes, attributes) is skipped."""
    rules: list[tuple[list[Compound], dict[str, str]]] = []
    for selectors, body in _css_blocks(_CSS_COMMENT.sub(" ", css)):
        decls = parse_declarations(body)
        if not decls:
            continue
        for raw_selector in selectors.split(","):
            selector = raw_selector.strip()
            if not selector or selector.startswith("@") or len(selector) > 200:
                continue
            compounds = [_compound(p) for p in selector.replace(">", " ").split()]
            if compounds and all(c is not None for c in compounds):
                rules.append(([c for c in compounds if c is not None], decls))
    return rules


def _matches(node: Node, compound: Compound) -> bool:
    tag, ident, classes = compound
    return (
        (tag is None or node.tag == tag)
        and (ident is None or node.attrs.get("id") == ident)
        and classes <= node.classes
    )


def _selector_matches(node: Node, compounds: list[Compound]) -> bool:
    if not _matches(node, compounds[-1]):
        return False
    remaining = compounds[:-1]
    for ancestor in node.ancestors():
        if not remaining:
            break
        if _matches(ancestor, remaining[-1]):
            remaining = remaining[:-1]
    return not remaining


def _px(value: str) -> float | None:
    if len(value) > 32:
        return None
    m = _LENGTH.match(value.strip())
    if m is None:
        return None
    number = float(m.group(1))
    return number * _UNIT_PX[m.group(2) or "px"] if m.group(2) != "%" or number == 0 else None


_CLIP_ZERO = re.compile(r"rect\(\s*0(px)?[\s,]+0(px)?[\s,]+0(px)?[\s,]+0(px)?\s*\)")
_SCALE_ZERO = re.compile(r"scale[xy]?\(\s*0(\.0+)?\s*(,\s*0(\.0+)?\s*)?\)")


def hiding_reason(decls: Mapping[str, str], tag: str = "") -> str | None:
    """Why these declarations hide an element's content from a reader (None: they do not)."""
    if decls.get("display") == "none":
        return "display:none"
    if decls.get("visibility") in ("hidden", "collapse"):
        return "visibility:hidden"
    if _px(decls.get("opacity", "1").rstrip("%")) == 0:
        return "opacity:0"
    size = decls.get("font-size")
    if size is not None and (px := _px(size)) is not None and px <= 1:
        return "font-size:0"
    clipping = decls.get("overflow", decls.get("overflow-y", "")) in ("hidden", "clip") or tag == "marquee"
    for dim in ("height", "width", "max-height", "max-width"):
        px = _px(decls.get(dim, ""))
        if px is not None and px <= (5 if tag == "marquee" else 1) and clipping:
            return f"zero size ({dim}:{decls[dim]})"
    if decls.get("position") in ("absolute", "fixed", "relative"):
        for side in ("left", "top", "right"):
            px = _px(decls.get(side, ""))
            if px is not None and px <= -500:
                return f"off-screen ({side}:{decls[side]})"
    for side in ("text-indent", "margin-left", "margin-top"):
        px = _px(decls.get(side, ""))
        if px is not None and px <= -500:
            return f"off-screen ({side}:{decls[side]})"
    if _CLIP_ZERO.search(decls.get("clip", "")) or "inset(50%" in decls.get("clip-path", ""):
        return "clipped"
    if _SCALE_ZERO.search(decls.get("transform", "")):
        return "transform:scale(0)"
    return None


def _attribute_reason(node: Node) -> str | None:
    if "hidden" in node.attrs:
        return "hidden attribute"
    if node.tag == "marquee":
        for dim in ("height", "width"):
            px = _px(node.attrs.get(dim, "").strip())
            if px is not None and px <= 5:
                return f"tiny <marquee> ({dim}={node.attrs[dim]})"
        amount = node.attrs.get("scrollamount", "").strip()
        if amount.isdigit() and int(amount) >= 500:
            return f"<marquee> scrolling too fast to read (scrollamount={amount})"
    return None


_SCRIPT_HIDE = re.compile(
    r"""getElementById\(\s*['"]([\w-]+)['"]\s*\)\s*\.style\.(?:display\s*=\s*['"]none|visibility\s*=\s*['"]hidden)"""
)
_DOC_WRITE = re.compile(r"document\.write(?:ln)?\s*\(")
_JS_STRING = re.compile(r"'((?:\\.|[^'\\\n]){0,20000})'|\"((?:\\.|[^\"\\\n]){0,20000})\"")
_JS_ESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|(.))", re.S)


def _unescape_js(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        code = m.group(1) or m.group(2)
        return chr(int(code, 16)) if code else m.group(3)

    return _JS_ESCAPE.sub(one, text)


def _written_html(code: str) -> Iterator[str]:
    """The HTML each `document.write(...)` call writes, when its argument is string literals joined by +."""
    for call in _DOC_WRITE.finditer(code):
        end = code.find(");", call.end(), call.end() + 40_000)
        argument = code[call.end() : end if end >= 0 else call.end() + 40_000]
        literals = [a if a else b for a, b in _JS_STRING.findall(argument)]
        if literals:
            yield _unescape_js("".join(literals))


def _keys(node: Node) -> list[str]:
    """Index keys of a node: its tag, `.class` for each class, `#id`."""
    keys = [node.tag, *(f".{c}" for c in node.classes)]
    if node.attrs.get("id"):
        keys.append(f"#{node.attrs['id']}")
    return keys


def _compound_key(compound: Compound) -> str:
    tag, ident, classes = compound
    return f"#{ident}" if ident else f".{min(classes)}" if classes else tag or "*"


Found = tuple[str, Node, bool]  # (why, the node that hides, whether to name that node)


class _Styler:
    """Resolves why a node is not rendered: its own and its ancestors' styles, attributes and tags.

    A planted stylesheet may hold thousands of rules and a hostile page tens of thousands of links, so
    rules are indexed by the key of their rightmost compound (and pre-filtered by the key of the
    compound before it), and answers are memoised per (node, font-size decided, visibility decided).
    """

    def __init__(self, rules: list[tuple[list[Compound], dict[str, str]]]) -> None:
        self._rules = rules[:MAX_CSS_RULES]
        self._index: dict[str, list[tuple[int, str | None]]] = {}
        for number, (compounds, _decls) in enumerate(self._rules):
            before = _compound_key(compounds[-2]) if len(compounds) > 1 else "*"
            self._index.setdefault(_compound_key(compounds[-1]), []).append((number, None if before == "*" else before))
        self._decls: dict[int, dict[str, str]] = {}
        self._found: dict[tuple[int, bool, bool], Found | None] = {}

    def declarations(self, node: Node, around: set[str]) -> dict[str, str]:
        """Declarations that apply to `node`; `around` holds the keys of (at least) all its ancestors."""
        cached = self._decls.get(id(node))
        if cached is None:
            cached = {}
            candidates = {
                number
                for key in (*_keys(node), "*")
                for number, before in self._index.get(key, ())
                if before is None or before in around
            }
            for number in sorted(candidates):
                compounds, decls = self._rules[number]
                if _selector_matches(node, compounds):
                    cached.update(decls)
            cached.update(parse_declarations(node.attrs.get("style", "")))
            self._decls[id(node)] = cached
        return cached

    def reason(self, node: Node) -> str | None:
        found = self._find(node)
        if found is None:
            return None
        why, where, name_it = found
        return why + (f" on enclosing <{where.tag}>" if name_it and where is not node else "")

    def _find(self, node: Node) -> Found | None:
        around = {key for ancestor in node.ancestors() for key in _keys(ancestor)}
        font_decided = visibility_decided = False
        walked: list[tuple[int, bool, bool]] = []
        result: Found | None = None
        current: Node | None = node
        while current is not None:
            memo_key = (id(current), font_decided, visibility_decided)
            if memo_key in self._found:
                result = self._found[memo_key]
                break
            walked.append(memo_key)
            if current.tag in _NOT_RENDERED:
                result = (_NOT_RENDERED[current.tag], current, False)
                break
            if current.hidden_by_script:
                result = ("hidden by script", current, True)
                break
            attr = _attribute_reason(current)
            if attr is not None:
                result = (attr, current, True)
                break
            decls = dict(self.declarations(current, around))
            # The nearest font-size and visibility win: a child may switch them back on.
            if font_decided:
                decls.pop("font-size", None)
            if visibility_decided:
                decls.pop("visibility", None)
            why = hiding_reason(decls, current.tag)
            if why is not None:
                result = (why, current, True)
                break
            font_decided |= "font-size" in decls
            visibility_decided |= "visibility" in decls
            current = current.parent
        for memo_key in walked:
            self._found[memo_key] = result
        return result


# -- ownership and URL normalisation ------------------------------------------------------------------------
def own_domains(hosts: Iterable[str]) -> tuple[str, ...]:
    """The system's own host names, with a leading `www.` dropped so siblings under the site count as own."""
    out = {h.lower().rstrip(".").removeprefix("www.") for h in hosts if h}
    return tuple(sorted(out))


def is_own(host: str, own: Iterable[str]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == o or host.endswith("." + o) for o in own)


_VOLATILE_PARAM = re.compile(
    r"^(_|t|ts|time|timestamp|v|ver|version|r|rnd|rand|random|nonce|cb|cachebust\w*|token|_token|csrf\w*|"
    r"sid|sessionid|session_id|jsessionid|phpsessid|aspsessionid\w*|__cf\w*)$",
    re.I,
)
_PATH_SESSION = re.compile(r";(jsessionid|sessionid|phpsessid)=[^/?#]*", re.I)


def normalise_url(url: str, asset: bool = False) -> str:
    """A URL without the parts that change per request: session ids, cache busters (all queries on assets)."""
    parts = urlsplit(url)
    path = _PATH_SESSION.sub("", parts.path)
    query = "" if asset else urlencode([(k, v) for k, v in parse_qsl(parts.query) if not _VOLATILE_PARAM.match(k)])
    return urlunsplit((parts.scheme, parts.netloc.lower(), path, query, ""))


# -- text normalisation --------------------------------------------------------------------------------------
_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DYNAMIC: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\d{4}\s*[-/.年]\s*\d{1,2}\s*[-/.月]\s*\d{1,2}(?:\s*日)?(?:T(?=\d))?"), "<date>"),
    (re.compile(r"\d{1,2}\s*月\s*\d{1,2}\s*日"), "<date>"),
    (re.compile(rf"\b\d{{1,2}}\s+{_MONTHS}\s+\d{{4}}\b|\b{_MONTHS}\s+\d{{1,2}},?\s+\d{{4}}\b", re.I), "<date>"),
    (re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:\s*[ap]\.?m\.?)?(?:Z|[+-]\d{2}:?\d{2})?", re.I), "<time>"),
    (re.compile(r"(?:星期|周|礼拜)[一二三四五六日天]"), "<weekday>"),
    (re.compile(r"\b(?:mon|tues?|wed(?:nes)?|thu(?:rs)?|fri|sat(?:ur)?|sun)(?:day)?\b\.?", re.I), "<weekday>"),
    (
        re.compile(
            r"((?:访问量|访问人数|访问次数|浏览量|浏览次数|点击量|点击数|点击率|阅读量|阅读数|访客数?|在线人数|"
            r"visitors?|views?|hits|page\s*views|online)\s*[:：]?\s*)\d[\d,]*",
            re.I,
        ),
        r"\1<n>",
    ),
    (re.compile(r"\d[\d,]*(\s*(?:人次|次)?\s*(?:浏览|访问|阅读|点击))"), r"<n>\1"),
    (re.compile(r"(第\s*)\d[\d,]*(\s*(?:位|个)\s*访)"), r"\1<n>\2"),
    (re.compile(r"\b1\d{9}(?:\d{3})?\b"), "<ts>"),
    (re.compile(r"\b[0-9a-f]{16,}\b", re.I), "<token>"),
]


_TOKEN_RUN = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{20,}={0,2}")


def _token(match: re.Match[str]) -> str:
    """A long run of letters *and* digits is a token, nonce or session id; a long word is not."""
    run = match.group(0)
    is_token = any(c.isdigit() for c in run) and any(c.isalpha() for c in run)
    return "<token>" if is_token else run


def normalise_text(text: str) -> str:
    """Collapse whitespace and replace dates, times, counters, timestamps and token-like strings."""
    text = " ".join(text.split())
    for pattern, replacement in _DYNAMIC:
        text = pattern.sub(replacement, text)
    return _TOKEN_RUN.sub(_token, text)


# -- analysis ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Link:
    href: str
    host: str
    text: str
    hidden: str | None  # why it is not rendered, None if visible
    external: bool
    keywords: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"href": self.href[:300], "text": self.text[:120], "why": self.hidden}
        if self.keywords:
            out["keywords"] = list(self.keywords[:10])
        return out


@dataclass(frozen=True, slots=True)
class PageAnalysis:
    title: str
    links: tuple[Link, ...]
    script_hosts: tuple[str, ...]
    iframe_hosts: tuple[str, ...]
    sensitive_found: tuple[str, ...]
    normalized_text: str
    normalized_sha256: str
    truncated: bool

    @property
    def hidden_links(self) -> list[Link]:
        """Hidden links that leave the site or carry a listed keyword (own hidden menus are normal)."""
        return [link for link in self.links if link.hidden and (link.external or link.keywords)]

    @property
    def hidden_links_with_keywords(self) -> list[Link]:
        return [link for link in self.links if link.hidden and link.keywords]


def _walk(root: Node) -> Iterator[Node]:
    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed([c for c in node.children if isinstance(c, Node)]))


def _attach_script_writes(builder: _TreeBuilder) -> None:
    """Parse `document.write('<html>')` literals into the tree where the script sits (bounded)."""
    fragments = 0
    for script in builder.scripts:
        if "src" in script.attrs:
            continue
        code = "".join(c for c in script.children if isinstance(c, str))
        parent = script.parent or builder.root
        for html in _written_html(code):
            if fragments >= MAX_WRITE_FRAGMENTS:
                return
            fragments += 1
            holder = Node("#written", {}, parent)
            parent.children.append(holder)
            written = _parse_into(holder, html)
            builder.styles.extend(written.styles)
            builder.scripts.extend(written.scripts)


def _mark_script_hidden(builder: _TreeBuilder, nodes: list[Node]) -> None:
    ids: set[str] = set()
    for script in builder.scripts:
        code = "".join(c for c in script.children if isinstance(c, str))
        ids.update(_SCRIPT_HIDE.findall(code))
    if ids:
        for node in nodes:
            if node.attrs.get("id") in ids:
                node.hidden_by_script = True


def analyse_page(
    html: str,
    base_url: str,
    own_hosts: Iterable[str],
    link_keywords: KeywordSet,
    sensitive_keywords: KeywordSet,
    excerpt_chars: int = 8000,
) -> PageAnalysis:
    """Everything the web-integrity probe reports about one page, from its decoded text."""
    root = Node("#document", {}, None)
    builder = _parse_into(root, html)
    _attach_script_writes(builder)
    nodes = list(_walk(root))
    _mark_script_hidden(builder, nodes)
    styler = _Styler(parse_stylesheet("\n".join(builder.styles)[:500_000]))
    own = own_domains([*own_hosts, urlsplit(base_url).hostname or ""])
    base = base_url
    for node in nodes:
        if node.tag == "base" and node.attrs.get("href"):
            with contextlib.suppress(ValueError):
                base = urljoin(base_url, node.attrs["href"])
            break

    def resolve(ref: str) -> tuple[str, str] | None:
        """Absolute URL and host of a reference; None for references no browser could follow."""
        try:
            url = urljoin(base, ref.strip())
            return url, (urlsplit(url).hostname or "").lower()
        except ValueError:
            return None

    title = ""
    links: list[Link] = []
    script_hosts: set[str] = set()
    iframe_hosts: set[str] = set()
    meta_text: list[str] = []
    lines: list[str] = []
    in_anchor: set[int] = set()  # nodes below an <a>: their text is already on the anchor's line
    links_over = 0
    for node in nodes:
        tag = node.tag
        if node.parent is not None and (node.parent.tag == "a" or id(node.parent) in in_anchor):
            in_anchor.add(id(node))
        if tag == "title" and not title:
            title = node.text(300)
            lines.append(f"title: {normalise_text(title)}")
        elif tag == "meta" and node.attrs.get("name", "").lower() in ("description", "keywords"):
            content = node.attrs.get("content", "")[:1000]
            meta_text.append(content)
            lines.append(f"meta {node.attrs['name'].lower()}: {normalise_text(content)}")
        elif tag == "a":
            text = node.text(200)
            target = resolve(node.attrs["href"]) if node.attrs.get("href", "").strip() else None
            if target is None or not target[0].lower().startswith(("http:", "https:")):
                if id(node) not in in_anchor:
                    lines.append(normalise_text(text))
                continue
            href, host = target
            if len(links) >= MAX_LINKS:
                links_over += 1
            else:
                label = " ".join(filter(None, [text, node.attrs.get("title", "")]))
                links.append(
                    Link(
                        href=href,
                        host=host,
                        text=text,
                        hidden=styler.reason(node),
                        external=bool(host) and not is_own(host, own),
                        keywords=tuple(link_keywords.find(href, label)),
                    )
                )
            lines.append(f"[a {normalise_url(href)}] {normalise_text(text)}")
        elif tag == "script":
            src = node.attrs.get("src", "").strip()
            if src:
                if (target := resolve(src)) is not None:
                    url, host = target
                    if host and not is_own(host, own):
                        script_hosts.add(host)
                    lines.append(f"[script {normalise_url(url, asset=True)}]")
            else:
                code = normalise_text("".join(c for c in node.children if isinstance(c, str)))
                if code:
                    lines.append(f"[inline script {hashlib.sha256(code.encode()).hexdigest()[:16]}]")
        elif tag in ("iframe", "frame", "embed", "object"):
            src = (node.attrs.get("src") or node.attrs.get("data") or "").strip()
            if src and (target := resolve(src)) is not None:
                url, host = target
                if tag in ("iframe", "frame") and host and not is_own(host, own):
                    iframe_hosts.add(host)
                lines.append(f"[{tag} {normalise_url(url, asset=True)}]")
        elif tag == "form" and node.attrs.get("action") and (target := resolve(node.attrs["action"])) is not None:
            lines.append(f"[form {normalise_url(target[0])}]")
        if tag not in _SKIP_TEXT and tag != "a" and id(node) not in in_anchor:
            for child in node.children:
                if isinstance(child, str) and child.strip():
                    lines.append(normalise_text(child))
    body_text = " ".join(root.text(MAX_TEXT_CHARS).split())
    sensitive = sensitive_keywords.find(title, *meta_text, body_text, *(link.href for link in links))
    normalized = "\n".join(line for line in lines if line)
    excerpt = normalized[:excerpt_chars]
    if len(normalized) > excerpt_chars:
        excerpt = excerpt.rsplit("\n", 1)[0]
    return PageAnalysis(
        title=title,
        links=tuple(links),
        script_hosts=tuple(sorted(script_hosts)),
        iframe_hosts=tuple(sorted(iframe_hosts)),
        sensitive_found=tuple(sensitive),
        normalized_text=excerpt,
        normalized_sha256=hashlib.sha256(normalized.encode()).hexdigest(),
        truncated=builder.truncated or links_over > 0,
    )


# -- decoding and diffs --------------------------------------------------------------------------------------
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", re.I)
_CHINESE_LEGACY = {"gb2312", "gbk", "gb_2312-80", "x-gbk", "euc-cn", "cp936"}


def _codec(name: str) -> str | None:
    name = name.strip().lower()
    if name in _CHINESE_LEGACY:
        return "gb18030"  # a superset: pages labelled GB2312 routinely use GBK characters
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_html(body: bytes, content_type: str | None = None) -> str:
    """Text of an HTML body: BOM, then the Content-Type charset, then <meta charset>, then UTF-8 or GB18030."""
    for bom, bom_codec in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if body.startswith(bom):
            return body[len(bom) :].decode(bom_codec, errors="replace")
    candidates: list[str] = []
    if content_type and (m := _HEADER_CHARSET.search(content_type)):
        candidates.append(m.group(1))
    if m2 := _META_CHARSET.search(body[:4096]):
        candidates.append(m2.group(1).decode("ascii", "replace"))
    for name in candidates:
        codec = _codec(name)
        if codec is not None:
            return body.decode(codec, errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("gb18030", errors="replace")
