"""Load YAML documents keeping the line of every value, and turn validation errors
into `FILE:LINE: what is wrong and what is expected` messages."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from drengine.errors import InputError
from drengine.suggest import did_you_mean

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)

MAX_YAML_BYTES = 2_000_000


@dataclass
class Source:
    """A parsed YAML document and the line (1-based) where each path starts."""

    path: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int:
        """The line of the deepest known prefix of `loc` (errors on missing keys point at the parent)."""
        for end in range(len(loc), -1, -1):
            found = self.lines.get(tuple(loc[:end]))
            if found is not None:
                return found
        return 1

    def where(self, loc: Loc) -> str:
        return f"{self.path}:{self.line_of(loc)}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: a repeated step or member silently shadowing another is a trap."""


# libyaml's composer when PyYAML was built with it (several times faster; same nodes and marks).
_COMPOSER: Any = getattr(yaml, "CSafeLoader", _UniqueKeyLoader)


def _scalars() -> yaml.constructor.SafeConstructor:
    """One constructor per document for its scalars (a loader per value was most of the time spent)."""
    return yaml.constructor.SafeConstructor()


def _construct(node: yaml.Node, loc: Loc, lines: dict[Loc, int], path: str,
               scalars: yaml.constructor.SafeConstructor | None = None) -> Any:
    scalars = scalars or _scalars()
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = scalars.construct_object(key_node)  # scalars only
            if isinstance(key, (dict, list)):
                raise InputError(f"{path}:{key_node.start_mark.line + 1}: a mapping key must be a plain value")
            if key in out:
                raise InputError(
                    f"{path}:{key_node.start_mark.line + 1}: key {key!r} appears twice; each key must be unique"
                )
            out[key] = _construct(value_node, (*loc, key), lines, path, scalars)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*loc, i), lines, path, scalars) for i, item in enumerate(node.value)]
    return scalars.construct_object(node)


def load_yaml(path: str | Path) -> Source:
    """Parse a YAML file; raise InputError naming the file and line for anything unreadable."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{name}: cannot read the file ({exc.strerror}); expected a readable YAML file") from None
    if len(raw) > MAX_YAML_BYTES:
        raise InputError(f"{name}:1: the file is {len(raw)} bytes; expected at most {MAX_YAML_BYTES}")
    return parse_yaml(raw, name)


def parse_yaml(raw: bytes | str, name: str) -> Source:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}:1: not UTF-8 text ({exc.reason}); expected a YAML file") from None
    try:
        node = yaml.compose(text, Loader=_COMPOSER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise InputError(f"{name}:{line}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{name}:1: not valid YAML: {exc}") from None
    except RecursionError:
        raise InputError(f"{name}:1: the document nests too deeply") from None
    lines: dict[Loc, int] = {}
    if node is None:
        return Source(name, None, lines)
    try:
        data = _construct(node, (), lines, name)
    except yaml.YAMLError as exc:
        raise InputError(f"{name}:1: not valid YAML: {exc}") from None
    except RecursionError:
        raise InputError(f"{name}:1: the document nests too deeply") from None
    return Source(name, data, lines)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation may hold (through Optional, unions, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (list, tuple, set, dict):
        return []
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _containers(annotation: Any) -> list[Any]:
    """What a list's items or a dict's values may be, for the annotation's list/dict parts."""
    found: list[Any] = []
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, set):
        found += list(typing.get_args(annotation)[:1])
    elif origin is dict:
        found += list(typing.get_args(annotation)[1:2])
    else:
        for arg in typing.get_args(annotation):
            found += _containers(arg)
    return found


def fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names a model accepts at `loc` (a key or index path into the document)."""
    current: list[Any] = [model]
    for part in loc:
        following: list[Any] = []
        for ann in current:
            models = _models_in(ann)
            if models:
                inside = [m.model_fields[part].annotation for m in models if isinstance(part, str)
                          and part in m.model_fields]
                # No field of that name: the tag pydantic adds for a discriminated union (`lock.etcd`).
                following += inside or [m for m in models if any(
                    typing.get_origin(f.annotation) is typing.Literal and part in typing.get_args(f.annotation)
                    for f in m.model_fields.values())]
            else:
                following += _containers(ann)
        current = following
    return sorted({name for ann in current for m in _models_in(ann) for name in m.model_fields})


def _describe(error: dict[str, Any], model: type[BaseModel] | None = None) -> str:
    kind = error["type"]
    msg = str(error["msg"])
    loc = error["loc"]
    field_name = ".".join(str(p) for p in loc) or "document"
    if kind == "missing":
        return f"{field_name}: required field is missing"
    if kind == "extra_forbidden":
        known = fields_at(model, tuple(loc[:-1])) if model is not None and loc else []
        hint = did_you_mean(str(loc[-1]), known) if known else ""
        listed = f" Fields here: {', '.join(known)}." if known and not hint else ""
        return f"{field_name}: unknown field.{hint or ' Check the spelling against the documented fields.'}{listed}"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    got = error.get("input")
    shown = f" (got {got!r})" if isinstance(got, (str, int, float, bool)) and len(repr(got)) < 80 else ""
    return f"{field_name}: {msg}{shown}"


def validate(source: Source, model: type[M]) -> M:
    """Validate a parsed document against a model, turning every problem into FILE:LINE text."""
    if not isinstance(source.data, dict):
        raise InputError(f"{source.path}:1: expected a mapping at the top of the document")
    try:
        return model.model_validate(source.data, context={"source": source})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            problems.append(f"{source.where(loc)}: {_describe({**err, 'loc': loc}, model)}")
        raise InputError(f"{source.path}: {len(problems)} problem(s)", problems) from None
