"""Safe YAML loading with line numbers, for every user-edited file (registry, rules, config).

- `yaml.SafeLoader` only: no Python object tags.
- Files over `MAX_BYTES`, documents with many aliases, collections nested deeper than `MAX_DEPTH` (the
  composer recurses: 5,000 levels were a RecursionError) and control characters such as NUL are refused as
  `FILE:LINE` problems, never tracebacks.
- Alias bombs (billion laughs) are refused by what the aliases expand to, not only by how many there are:
  PyYAML builds each anchored node once and every alias shares it, so loading is cheap, but whoever walks the
  data as a tree (pydantic's `model_dump` of a free-form `dict[str, Any]` such as `sinks.<name>`, JSON or YAML
  output, a deep copy) visits every expansion: 9 levels of 9 aliases are 81 aliases (under `MAX_ALIASES`) and
  9**9 (387 million) nodes. Each node's expanded size is counted as it is composed, and a document whose
  aliases expand to more than `MAX_ALIAS_NODES` nodes is refused at the alias that crosses the limit; an alias
  to a node that contains it (a cycle, infinite when walked) is refused too.
- Duplicate mapping keys are errors (PyYAML silently keeps the last one).
- Mappings and sequences remember the line of each key / item, so a validation error at a
  pydantic location such as ``("systems", 3, "endpoints", 0, "url")`` can be reported as
  ``registry.yaml:41: ...``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from pydantic import ValidationError

from sentinel.errors import InputError, Problem

T = TypeVar("T")

MAX_BYTES = 1_000_000
MAX_ALIASES = 200
#: nodes that all the aliases of one document may expand to (each alias counts its anchor's expanded size)
MAX_ALIAS_NODES = 100_000
#: nesting levels of mappings/sequences; the deepest shipped file has 10
MAX_DEPTH = 64


class LineDict(dict[str, Any]):
    """A dict that also knows the line (1-based) of itself and of each of its keys."""

    line: int = 0
    key_lines: dict[str, int]


class LineList(list[Any]):
    """A list that knows the line of itself and of each item."""

    line: int = 0
    item_lines: list[int]


class _Refused(yaml.YAMLError):
    """A document the loader will not build (bomb, too deep): one located message, not a syntax error."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


if TYPE_CHECKING:  # what the loaders below are made of, as one class the type checker knows
    _Composing = yaml.SafeLoader
else:

    class _Composing(yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        pass


class _Loader(_Composing):
    """Composes and checks the nodes in Python; a parser class (below) supplies the events."""

    def __init__(self, stream: str, filename: str) -> None:
        self._init_parser(stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self.filename = filename
        self.problems: list[Problem] = []
        self.alias_count = 0
        self.depth = 0
        #: id(node) -> nodes it stands for once every alias inside it is expanded (set when it is complete)
        self.expanded: dict[int, int] = {}
        self.alias_nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            line = event.start_mark.line + 1
            self.alias_count += 1
            if self.alias_count > MAX_ALIASES:
                raise _Refused(line, f"more than {MAX_ALIASES} aliases; refusing a possible YAML bomb")
            target = self.anchors.get(event.anchor)
            if target is not None:  # else PyYAML reports the undefined alias
                size = self.expanded.get(id(target))
                if size is None:
                    raise _Refused(line, f"alias *{event.anchor} refers to a node that contains it (a cycle)")
                self.alias_nodes += size
                if self.alias_nodes > MAX_ALIAS_NODES:
                    raise _Refused(
                        line,
                        f"aliases expand to more than {MAX_ALIAS_NODES:,} nodes (*{event.anchor} alone to {size:,}); "
                        "refusing a possible YAML bomb",
                    )
            return super().compose_node(parent, index)
        if self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent):
            if self.depth >= MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise _Refused(event.start_mark.line + 1, f"nested more than {MAX_DEPTH} levels deep; refusing to load")
            self.depth += 1
            try:
                node = super().compose_node(parent, index)
            finally:
                self.depth -= 1
            if node is not None:
                self.expanded[id(node)] = self._size(node)
            return node
        node = super().compose_node(parent, index)
        self.expanded[id(node)] = 1
        return node

    def _size(self, node: yaml.Node) -> int:
        """1 + the expanded sizes of a complete collection's children (keys too: a key can be an alias)."""
        children: list[yaml.Node] = (
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
        )
        return 1 + sum(self.expanded.get(id(child), 1) for child in children)

    def _init_parser(self, stream: str) -> None:
        """Set up the parser half of the loader; each concrete loader below says which parser."""

    @staticmethod
    def line_at(text: str, position: int) -> int:
        """The line of a reader error's position: a character index into the text."""
        return text.count("\n", 0, position) + 1


class _PythonLoader(_Loader, yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    def _init_parser(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


_CParser: Any = getattr(getattr(yaml, "cyaml", None), "CParser", None)


class _LibyamlLoader(_Loader, _CParser or object):  # type: ignore[misc]
    def _init_parser(self, stream: str) -> None:
        _CParser.__init__(self, stream)

    @staticmethod
    def line_at(text: str, position: int) -> int:
        """libyaml reads the text as UTF-8: its positions are byte offsets."""
        return text.encode("utf-8", "surrogatepass")[:position].count(b"\n") + 1


#: libyaml scans and parses when PyYAML was built with it (a fifth of the pure-Python time for the
#: shipped rules); the nodes are composed and checked in Python either way.
LOADER: type[_Loader] = _LibyamlLoader if _CParser is not None else _PythonLoader


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str | int | float | bool) and key is not None:
            loader.problems.append(Problem(loader.filename, line, f"mapping key {key!r} is not a scalar"))
            continue
        skey = str(key)
        if skey in result:
            loader.problems.append(
                Problem(
                    loader.filename,
                    line,
                    f"duplicate key '{skey}' (first defined on line {result.key_lines[skey]})",
                )
            )
            continue
        result[skey] = loader.construct_object(value_node, deep=True)
        result.key_lines[skey] = line
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _bad_character(loader: type[_Loader], text: str, exc: yaml.reader.ReaderError, filename: str) -> Problem:
    at = loader.line_at(text, exc.position)
    what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
    return Problem(filename, at, f"character {what} is not allowed in YAML (control character)")


def load_yaml_text(text: str, filename: str, loader_class: type[_Loader] = LOADER) -> Any:
    """Parse one YAML document; raise `InputError` naming the file and line on any problem."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise InputError([Problem(filename, None, f"file is larger than {MAX_BYTES} bytes; refusing to load")])
    try:
        # the Python reader checks every character when built, so construction belongs inside the `try`
        loader = loader_class(text, filename)
    except yaml.reader.ReaderError as exc:
        raise InputError([_bad_character(loader_class, text, exc, filename)]) from None
    try:
        data = loader.get_single_data()
    except yaml.reader.ReaderError as exc:  # libyaml's reader meets it while parsing
        raise InputError([_bad_character(loader_class, text, exc, filename)]) from None
    except _Refused as exc:
        raise InputError([Problem(filename, exc.line, exc.message)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(x for x in (exc.context, exc.problem) if x) or "invalid YAML"
        raise InputError([Problem(filename, line, f"YAML syntax error: {what}")]) from None
    except yaml.YAMLError as exc:
        raise InputError([Problem(filename, None, f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    if loader.problems:
        raise InputError(loader.problems)
    return data


def load_yaml_file(path: Path) -> Any:
    """Read and parse a YAML file, turning I/O and decoding errors into `InputError`."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise InputError([Problem(str(path), None, f"file is {size} bytes, over the {MAX_BYTES}-byte limit")])
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError([Problem(str(path), None, f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    except OSError as exc:
        raise InputError([Problem(str(path), None, f"cannot read file: {exc.strerror or exc}")]) from None
    return load_yaml_text(text, str(path))


def line_of(data: Any, loc: Sequence[int | str]) -> int | None:
    """The line of the deepest element of `loc` that exists in `data` (a parsed LineDict tree)."""
    best: int | None = getattr(data, "line", None) or None
    node = data
    for part in loc:
        if isinstance(node, LineDict) and isinstance(part, str) and part in node:
            best = node.key_lines.get(part, best)
            node = node[part]
        elif isinstance(node, LineList) and isinstance(part, int) and 0 <= part < len(node):
            best = node.item_lines[part]
            node = node[part]
        else:
            break
        inner = getattr(node, "line", None)
        if isinstance(node, LineDict | LineList) and inner and best is None:
            best = inner
    return best


_BOUNDS = {
    "greater_than": "must be more than",
    "greater_than_equal": "must be at least",
    "less_than": "must be less than",
    "less_than_equal": "must be at most",
}
_LIMIT_KEYS = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}


def _shown_value(value: Any) -> str | None:
    """The offending value as the user wrote it, for scalars short enough to quote."""
    if isinstance(value, bool) or value is None:
        return None if value is None else str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and len(value) <= 80:
        return repr(value)
    return None


def describe_error(error: Any) -> str:
    """One validation error as `loc: message`, naming the offending value (`tier: 'town' is not one of ...`)."""
    loc = ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-"))
    msg = str(error["msg"])
    kind = str(error["type"])
    ctx = error.get("ctx") or {}
    value = _shown_value(error.get("input"))
    if kind == "extra_forbidden":
        return f"unknown key '{error['loc'][-1]}'" + (
            f" (in {'.'.join(map(str, error['loc'][:-1]))})" if len(error["loc"]) > 1 else ""
        )
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    elif kind in ("enum", "literal_error") and value is not None:
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        msg = f"{value} is not one of {expected}"
    elif kind in _BOUNDS and value is not None:
        msg = f"{value} {_BOUNDS[kind]} {ctx.get(_LIMIT_KEYS[kind], '?')}"
    elif value is not None and kind != "missing" and value not in msg:
        msg = f"{msg} (got {value})"
    return f"{loc}: {msg}" if loc else msg


def validation_problems(
    exc: ValidationError, data: Any, filename: str, prefix: Sequence[int | str] = ()
) -> list[Problem]:
    """Turn a pydantic ValidationError into located problems, every one of them."""
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        line = line_of(data, loc)
        shown = dict(error)
        shown["loc"] = (*prefix, *loc)
        problems.append(Problem(filename, line, describe_error(shown)))
    return problems


def parse_files(
    roots: Iterable[Path], list_files: Callable[[Path], list[Path]], parse: Callable[[Path], T]
) -> tuple[list[tuple[Path, T]], list[Problem]]:
    """Parse every file under every root, collecting each InputError instead of stopping at the first,
    so users see all their mistakes in one run."""
    parsed: list[tuple[Path, T]] = []
    problems: list[Problem] = []
    for root in roots:
        try:
            files = list_files(root)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        for file in files:
            try:
                parsed.append((file, parse(file)))
            except InputError as exc:
                problems.extend(exc.problems)
    return parsed, problems
