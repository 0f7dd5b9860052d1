"""Typed settings, loaded in one place: defaults < `--config FILE` < `SENTINEL_*` environment < flags.

`collectors:` holds the network-wide knobs (timeouts, rates, concurrency, contact, scan method); each probe's own
options are the `Options` model its class declares, under `collectors.<probe>: {...}` (environment:
`SENTINEL_COLLECTORS__<PROBE>__<KEY>`). The probes are looked up when settings are validated, never when this
module is imported, so reading settings does not load the collectors (nor the sinks) until it has to.

Every field typed as a path (`Path`, `Path | None`, `list[Path]`, in any section, a probe's options included) is
rebased against the settings file's folder when the file gives it relative.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

from sentinel.errors import InputError, Problem
from sentinel.findings.policy import FindingsSettings
from sentinel.models.observer import DEFAULT_SITE, DEFAULT_VANTAGE, Observer, Vantage, check_site, check_vantage
from sentinel.notify.settings import NotifySettings
from sentinel.runtime.settings import RunSettings, ServeSettings
from sentinel.web.settings import WebSettings
from sentinel.yamlio import describe_error, line_of, load_yaml_file

if TYPE_CHECKING:
    from pydantic_core.core_schema import ValidatorFunctionWrapHandler

    from sentinel.collectors.base import Probe

HIGH_RISK_PORTS = (21, 23, 135, 139, 445, 1433, 2375, 3306, 3389, 5432, 5900, 6379, 9200, 11211, 27017)
ENV_PREFIX = "SENTINEL_"

OptionsT = TypeVar("OptionsT", bound="ProbeOptions")


class ProbeOptions(BaseModel):
    """A probe's own options (`collectors.<probe>: {...}`): a probe class declares a subclass as `Options`."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _probe_catalogue() -> Mapping[str, type[Probe]]:
    from sentinel.collectors import BUILTIN_PROBES  # at validation time: the collectors need this module first

    return BUILTIN_PROBES


def default_probes() -> list[str]:
    """`collectors.probes` when not given: every built-in probe whose `schedule` is "sweep"."""
    return [name for name, probe in _probe_catalogue().items() if probe.schedule == "sweep"]


def run_only_probes() -> list[str]:
    """`run.extra_probes` when not given: the probes meant only for `sentinel run`'s longer schedule."""
    return [name for name, probe in _probe_catalogue().items() if probe.schedule == "run"]


def legacy_moves(collectors: Mapping[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """The deprecated flat keys of a `collectors:` mapping, each with the (probe, option) pairs it now sets."""
    moves: dict[str, list[tuple[str, str]]] = {}
    for name, probe in _probe_catalogue().items():
        for old, new in probe.legacy_keys.items():
            if old in collectors and old not in CollectorSettings.model_fields:
                moves.setdefault(old, []).append((name, new))
    return moves


def move_legacy_keys(collectors: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[tuple[str, str]]]]:
    """`collectors:` with each deprecated flat key moved into the section of every probe it applies to; a key the
    probe's own section already gives wins over the flat one."""
    moves = legacy_moves(collectors)
    out = {k: v for k, v in collectors.items() if k not in moves}
    for old, targets in moves.items():
        for probe, new in targets:
            section = out.get(probe)
            if section is None:
                section = {}
            if isinstance(section, Mapping) and new not in section:
                out[probe] = {**section, new: collectors[old]}
    return out, moves


def _deprecation(where: str, old: str, targets: Sequence[tuple[str, str]], env: bool = False) -> str:
    if env:
        new = " and ".join(f"{ENV_PREFIX}COLLECTORS__{p.upper()}__{k.upper()}" for p, k in targets)
        return f"{where}: {ENV_PREFIX}COLLECTORS__{old.upper()} is deprecated; use {new}"
    new = " and ".join(f"collectors.{p}.{k}" for p, k in targets)
    return f"{where}: collectors.{old} is deprecated; use {new}"


_KNOWN_ERRORS = frozenset(typing.get_args(ErrorType))


def _relocated(exc: ValidationError, prefix: tuple[str | int, ...]) -> list[InitErrorDetails]:
    """The errors of `exc`, found under `prefix`, ready to be raised again as one ValidationError."""
    details: list[InitErrorDetails] = []
    for error in exc.errors():
        kind: str | PydanticCustomError = error["type"]
        if kind not in _KNOWN_ERRORS:  # a custom error of an Options model: keep its message as it was
            kind = PydanticCustomError(error["type"], error["msg"])
        detail: InitErrorDetails = {"type": kind, "loc": (*prefix, *error["loc"]), "input": error["input"]}
        if "ctx" in error and isinstance(kind, str):
            detail["ctx"] = error["ctx"]
        details.append(detail)
    return details


class CollectorSettings(BaseModel):
    """The network-wide knobs; each probe's own options are `collectors.<probe>` (see `probe_options`)."""

    # extra entries are the probes' validated Options, one per built-in probe (set by `_probe_sections`; any
    # other unknown key is refused there, so "allow" lets no typo through)
    model_config = ConfigDict(extra="allow", frozen=True)

    probes: list[str] = Field(
        default_factory=default_probes,
        description="probes a sweep runs; default: every built-in probe whose schedule is 'sweep'",
    )
    scan_method: Literal["auto", "syn", "connect"] = Field(
        default="auto",
        description="port scan: SYN with raw-socket rights (auto); syn = SYN, falling back to connect with a "
        "warning; connect = connect scan only",
    )
    connect_timeout: float = Field(default=3.0, gt=0, le=60)
    tls_timeout: float = Field(default=5.0, gt=0, le=60)
    http_timeout: float = Field(default=15.0, gt=0, le=120)
    job_timeout: float = Field(default=120.0, gt=0, le=3600)
    retries: int = Field(default=1, ge=0, le=5)
    per_target_rate: float = Field(default=5.0, gt=0, description="connections per second per address")
    per_target_burst: float = Field(default=5.0, ge=1)
    per_target_concurrency: int = Field(default=4, ge=1, le=256)
    global_rate: float = Field(default=500.0, gt=0, description="connections per second in all")
    # A raw probe (SYN, ICMP echo) is one small packet that the target's kernel answers without any process
    # accepting a connection, so it has its own budget, counted in packets (nmap's --max-rate), per address
    # and in all.
    per_target_packet_rate: float = Field(
        default=100.0, gt=0, description="raw probe packets (SYN, ICMP echo) per second per address"
    )
    per_target_packet_burst: float = Field(default=20.0, ge=1)
    global_packet_rate: float = Field(default=2000.0, gt=0, description="raw probe packets per second in all")
    rtt_initial_timeout: float = Field(
        default=1.0, gt=0, le=60, description="raw probe timeout before any RTT is measured (nmap's initial)"
    )
    rtt_min_timeout: float = Field(
        default=0.1,
        gt=0,
        le=60,
        description="floor of the adaptive raw probe timeout (srtt + 4 rttvar); its ceiling is connect_timeout",
    )
    max_connections: int = Field(default=256, ge=1, le=10000)
    max_jobs: int = Field(default=128, ge=1, le=10000)
    max_redirects: int = Field(default=5, ge=0, le=20)
    max_body_bytes: int = Field(default=2_000_000, ge=1024)
    contact: str | None = Field(default=None, description="shown in the User-Agent so owners can reach you")

    @model_validator(mode="wrap")
    @classmethod
    def _probe_sections(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Validate `collectors.<probe>` against each probe's Options (deprecated flat keys moved there first, with
        a warning), refuse unknown keys, and keep one Options instance per built-in probe."""
        if isinstance(data, CollectorSettings) or not isinstance(data, Mapping):
            return handler(data)
        catalogue = _probe_catalogue()
        data, moves = move_legacy_keys(data)
        for old, targets in moves.items():
            warnings.warn(_deprecation("settings", old, targets), FutureWarning, stacklevel=3)
        errors: list[InitErrorDetails] = []
        options: dict[str, ProbeOptions] = {}
        rest: dict[str, Any] = {}
        for key, value in data.items():
            if key in cls.model_fields:
                rest[key] = value
            elif key in catalogue:
                declared = catalogue[key].Options
                try:
                    options[key] = value if isinstance(value, declared) else declared.model_validate(value or {})
                except ValidationError as exc:
                    errors.extend(_relocated(exc, (key,)))
            else:
                errors.append({"type": "extra_forbidden", "loc": (key,), "input": value})
        model: CollectorSettings | None = None
        try:
            model = handler(rest)
        except ValidationError as exc:
            errors = _relocated(exc, ()) + errors
        names = rest.get("probes")
        if isinstance(names, list):  # here, not when the probes are built, so the message can name the item's line
            available = ", ".join(catalogue)
            errors.extend(
                {
                    "type": PydanticCustomError(
                        "unknown_probe",
                        "unknown probe {name} (available: {available})",
                        {"name": repr(name), "available": available},
                    ),
                    "loc": ("probes", i),
                    "input": name,
                }
                for i, name in enumerate(names)
                if isinstance(name, str) and name not in catalogue
            )
        if errors or model is None:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        extra = {name: options.get(name) or probe.Options() for name, probe in catalogue.items()}
        object.__setattr__(model, "__pydantic_extra__", extra)
        return model

    def probe_options(self, name: str, model: type[OptionsT]) -> OptionsT:
        """The options of probe `name` (its section, else the model's defaults)."""
        found = (self.__pydantic_extra__ or {}).get(name)
        if isinstance(found, model):
            return found
        if isinstance(found, Mapping):  # e.g. model_copy(update={"dns": {...}}), which does not validate
            return model.model_validate(found)
        return model()


@dataclass(frozen=True)
class SettingsSource:
    """Where each setting was given, so a problem found with it later still names its place: the settings file
    and line, the SENTINEL_* variable, or the command line (the layer that won, as `load_settings` merged them)."""

    file: str = "<settings>"
    #: the parsed settings file (its mappings know their lines); None without one
    raw: Any = None
    #: new location -> where the file wrote it, for deprecated flat keys moved into a probe's section
    origin: Mapping[Loc, Loc] = dataclasses.field(default_factory=dict)
    #: location each SENTINEL_* variable sets -> the variable's name
    env: Mapping[Loc, str] = dataclasses.field(default_factory=dict)
    env_origin: Mapping[Loc, Loc] = dataclasses.field(default_factory=dict)
    #: locations the command-line flags set
    flags: frozenset[Loc] = frozenset()

    def problem(self, keys: Sequence[str | int], message: str) -> Problem:
        loc = tuple(keys)
        if any(loc[: len(flag)] == flag for flag in self.flags):
            return Problem("command line", None, message)
        from_env = _origin(loc, self.env_origin)
        for where, variable in self.env.items():
            if from_env[: len(where)] == where:
                return Problem("environment", None, f"{variable}: {message}")
        in_file = _origin(loc, self.origin)
        # a key missing from a section that only the environment gives: the file has no line for it
        if not _gives(self.raw, in_file[:-1]) and any(where[: len(loc) - 1] == from_env[:-1] for where in self.env):
            return Problem("environment", None, message)
        if self.raw is None:
            return Problem(self.file, None, message)
        return Problem(self.file, line_of(self.raw, in_file), message)


def _gives(layer: Any, loc: Loc) -> bool:
    """Whether the nested mapping `layer` has every key of `loc`."""
    for part in loc:
        if not isinstance(layer, Mapping) or part not in layer:
            return False
        layer = layer[part]
    return True


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    registry: Path | None = None
    store: Path = Path("sentinel.db")
    rules: list[Path] = Field(default_factory=list)
    actor: str = Field(default_factory=lambda: os.environ.get("USER") or "operator")
    collectors: CollectorSettings = Field(default_factory=CollectorSettings)
    sinks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    web: WebSettings = Field(default_factory=WebSettings)
    run: RunSettings = Field(default_factory=RunSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    #: deprecated (use `sinks.elasticsearch`); typed by the sinks stage, and checked by `load_settings`
    elasticsearch: dict[str, Any] | None = None
    findings: FindingsSettings = Field(default_factory=FindingsSettings)
    #: who this instance is (SENTINEL_SITE, SENTINEL_VANTAGE): stamped on every observation, finding, document
    #: and metric; the vantage is part of each finding's id
    site: str = Field(default=DEFAULT_SITE, description="the monitoring site, e.g. city or hexi-district")
    vantage: Vantage = Field(default=DEFAULT_VANTAGE, description="the network probed from: internet|extranet|internal")

    @field_validator("site")
    @classmethod
    def _site(cls, value: str) -> str:
        return check_site(value)

    @field_validator("vantage", mode="before")
    @classmethod
    def _vantage(cls, value: object) -> object:
        return check_vantage(value) if isinstance(value, str) else value

    @property
    def observer(self) -> Observer:
        return Observer(self.site, self.vantage)

    _source: SettingsSource = PrivateAttr(default_factory=SettingsSource)

    def locate(self, keys: Sequence[str | int], message: str) -> Problem:
        """`message` about the setting at `keys` (e.g. ("sinks", "jsonl", "path")), placed where that setting was
        given: FILE:LINE of its key (of the nearest enclosing key when it is missing), or the SENTINEL_* variable,
        or the command line. For checks a stage makes after the settings loaded."""
        return self._source.problem(keys, message)

    def fingerprint(self) -> str:
        """A hash of the effective configuration, written into each sweep's audit record."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """SENTINEL_STORE=x, SENTINEL_COLLECTORS__CONNECT_TIMEOUT=2, SENTINEL_COLLECTORS__DNS__RESOLVERS='["10.0.0.53"]'
    (double underscore nests; a value starting with [ or { is JSON)."""
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key.startswith(f"{ENV_PREFIX}TEST"):
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        if path[0] not in Settings.model_fields:
            continue
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        parsed: Any = value
        if value[:1] in "[{":
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                parsed = value
        if path == ["rules"] and isinstance(parsed, str):
            parsed = [p for p in parsed.split(os.pathsep) if p]
        node[path[-1]] = parsed
    return out


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


# -- paths: rebased by their field's type ------------------------------------------------------------------------
def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type inside `X | None`, whether it is a list of it)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(inner) != 1:
            return None, False
        annotation = inner[0]
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (None,)
        return item, True
    return annotation, False


def _sections(model: type[BaseModel], data: Mapping[str, Any]) -> Iterator[tuple[str, Any, bool]]:
    """(key, type, is a list) for each key of `data` that `model` types, probe sections included."""
    for name, field in model.model_fields.items():
        if name in data:
            yield (name, *_unwrap(field.annotation))
    if issubclass(model, CollectorSettings):
        for name, probe in _probe_catalogue().items():
            if name in data:
                yield name, probe.Options, False


def rebase_paths(model: type[BaseModel], data: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """`data` (as a settings file gives it for `model`) with every relative path made relative to `base`: the
    fields typed `Path`, `Path | None` or `list[Path]`, in nested sections and lists of sections too."""

    def rebased(value: Any) -> Any:
        return str(base / value) if isinstance(value, str) and not Path(value).is_absolute() else value

    out = dict(data)
    for key, kind, many in _sections(model, data):
        value = out[key]
        if kind is Path:
            out[key] = [rebased(v) for v in value] if many and isinstance(value, list) else rebased(value)
        elif isinstance(kind, type) and issubclass(kind, BaseModel):
            if many and isinstance(value, list):
                out[key] = [rebase_paths(kind, v, base) if isinstance(v, Mapping) else v for v in value]
            elif not many and isinstance(value, Mapping):
                out[key] = rebase_paths(kind, value, base)
    return out


# -- loading ----------------------------------------------------------------------------------------------------
Loc = tuple[str | int, ...]


def _move_collectors(
    layer: dict[str, Any], where: str, raw: Any = None, env: bool = False
) -> tuple[dict[str, Any], dict[Loc, Loc]]:
    """One layer (file, environment, flags) with its deprecated `collectors.<flat key>` moved into the probes'
    sections, a warning for each; and {new location: old location}, to point errors at the line given."""
    collectors = layer.get("collectors")
    if not isinstance(collectors, Mapping):
        return layer, {}
    moved, moves = move_legacy_keys(collectors)
    origin: dict[Loc, Loc] = {}
    for old, targets in moves.items():
        line = line_of(raw, ("collectors", old)) if raw is not None else None
        warnings.warn(
            _deprecation(f"{where}:{line}" if line else where, old, targets, env=env), FutureWarning, stacklevel=3
        )
        for probe, new in targets:
            origin[("collectors", probe, new)] = ("collectors", old)
    return {**layer, "collectors": moved}, origin


def _origin(loc: Loc, origin: Mapping[Loc, Loc]) -> Loc:
    for new, old in origin.items():
        if loc[: len(new)] == new:
            return (*old, *loc[len(new) :])
    return loc


def _problems(exc: ValidationError, where: SettingsSource, at: Loc = ()) -> list[Problem]:
    """Every error of `exc` (found under `at`), placed where its setting was given."""
    problems = []
    for error in exc.errors():
        loc = (*at, *error["loc"])
        problems.append(where.problem(loc, describe_error({**error, "loc": loc})))
    return problems


def _env_locations(environ: Mapping[str, str]) -> dict[Loc, str]:
    """The location each SENTINEL_* variable that `_env_overrides` reads sets -> the variable's name."""
    out: dict[Loc, str] = {}
    for key in environ:
        if key.startswith(ENV_PREFIX) and not key.startswith(f"{ENV_PREFIX}TEST"):
            path = tuple(key[len(ENV_PREFIX) :].lower().split("__"))
            if path[0] in Settings.model_fields:
                out[path] = key
    return out


def _leaves(layer: Mapping[str, Any], at: Loc = ()) -> list[Loc]:
    """The location of each value a layer (flags) sets, nested mappings walked."""
    out: list[Loc] = []
    for key, value in layer.items():
        out.extend(_leaves(value, (*at, key)) if isinstance(value, Mapping) and value else [(*at, key)])
    return out


def _check_legacy_elasticsearch(section: Any, where: SettingsSource) -> list[Problem]:
    """The deprecated top-level `elasticsearch:` section, checked against the sink's model (loaded only then)."""
    if not isinstance(section, Mapping):
        return []
    from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings

    try:
        ElasticsearchSettings.model_validate(dict(section))
    except ValidationError as exc:
        return _problems(exc, where, ("elasticsearch",))
    return []


def _check_sinks(data: Mapping[str, Any], environ: Mapping[str, str], where: SettingsSource) -> list[Problem]:
    """Each `sinks.NAME` checked against its sink's options model here, where the file's lines are known (the
    sinks check again when built, but could only say "settings"). An Elasticsearch sink that the deprecated
    forms also configure is left to the sinks stage, which merges them."""
    sections = data.get("sinks")
    if not isinstance(sections, Mapping) or not sections:
        return []
    from sentinel.sinks import BUILTIN_SINKS, sink_options_model
    from sentinel.sinks.settings import LEGACY_ES_ENV

    legacy_es = data.get("elasticsearch") is not None or any(k.startswith(LEGACY_ES_ENV) for k in environ)
    problems: list[Problem] = []
    for name, section in sections.items():
        if name not in BUILTIN_SINKS:
            available = ", ".join(BUILTIN_SINKS)
            problems.append(where.problem(("sinks", name), f"sinks: unknown sink '{name}' (available: {available})"))
            continue
        model = sink_options_model(name)
        if model is None or not isinstance(section, Mapping) or (name == "elasticsearch" and legacy_es):
            continue  # a section that is not a mapping is Settings' own error
        try:
            model.model_validate(dict(section))
        except ValidationError as exc:
            problems.extend(_problems(exc, where, ("sinks", name)))
    return problems


def load_settings(
    config_file: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Every problem is placed where its setting was given (FILE:LINE, the SENTINEL_* variable, the command line),
    and the settings keep those places for later checks (`Settings.locate`)."""
    data: dict[str, Any] = {}
    source = "<settings>"
    raw: Any = None
    origin: dict[Loc, Loc] = {}
    if config_file is not None:
        raw = load_yaml_file(config_file)
        source = str(config_file)
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise InputError([Problem(source, 1, "a settings file must be a mapping")])
        data, origin = _move_collectors(dict(raw), source, raw)
        data = rebase_paths(Settings, data, config_file.parent)
    environ = os.environ if environ is None else environ
    env, env_origin = _move_collectors(_env_overrides(environ), "environment", env=True)
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    data = _deep_merge(data, env)
    data = _deep_merge(data, given)
    where = SettingsSource(source, raw, origin, _env_locations(environ), env_origin, frozenset(_leaves(given)))
    problems = [*_check_legacy_elasticsearch(data.get("elasticsearch"), where), *_check_sinks(data, environ, where)]
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise InputError([*problems, *_problems(exc, where)]) from None
    if problems:
        raise InputError(problems)
    settings._source = where
    return settings
