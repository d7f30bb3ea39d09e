"""A pydantic ValidationError as the one line a user reads: the key, its value, what is allowed.

pydantic locates an error by a path of keys (with the tag of a discriminated
union among them) and describes it in its own words; the schema's classes,
walked along that path, give the dotted key as typed on the command line, the
keys its section allows, and the whole range of a bounded key.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from mnist_sweep.schema.base import ABSENT

KINDS = {  # pydantic's error type: what is allowed instead
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be a group of keys",
    "dict_type": "must be a group of keys",
    "model_attributes_type": "must be a group of keys",
    "missing": "missing (a required key)",
    "finite_number": "must be a finite number",
    "string_too_short": "must not be empty",
}
BOUNDS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


@dataclass
class ErrorLocation:
    """Where an error is: the dotted key, the section holding it and the key's declared type."""

    key: str
    section: type[BaseModel] | None = None
    annotation: Any = None
    constraints: list[Any] = field(default_factory=list)


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """The type inside Annotated[...] and `X | None`, with the Annotated constraints."""
    constraints: list[Any] = []
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *extra = get_args(annotation)
            for item in extra:
                constraints += item.metadata if isinstance(item, FieldInfo) else [item]
            continue
        if origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation, constraints


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _sections(annotation: Any) -> list[type[BaseModel]]:
    """The members of a union of sections (a discriminated union), else none."""
    if get_origin(annotation) not in (Union, types.UnionType):
        return []
    return [a for a in get_args(annotation) if _is_section(a)]


def _tag_field(section: type[BaseModel]) -> tuple[str, tuple[Any, ...]] | None:
    """The key that tells a union's members apart (`_target_`, `kind`: each member's first
    field that takes only given strings), and its values."""
    for name, info in section.model_fields.items():
        values, _ = _unwrap(info.annotation)
        if get_origin(values) is Literal and all(isinstance(v, str) for v in get_args(values)):
            return info.alias or name, get_args(values)
    return None


def _tags(annotation: Any) -> tuple[str, list[Any]]:
    found = [t for t in map(_tag_field, _sections(annotation)) if t is not None]
    return (found[0][0] if found else "kind"), [v for _, values in found for v in values]


def _field(section: type[BaseModel], key: Any) -> FieldInfo | None:
    return next(
        (info for name, info in section.model_fields.items() if (info.alias or name) == key),
        None,
    )


def locate(root: type[BaseModel], loc: tuple[Any, ...]) -> ErrorLocation:
    """Follow pydantic's error path through the schema's classes."""
    parts: list[str] = []
    annotation: Any = root
    section: type[BaseModel] | None = None
    constraints: list[Any] = []
    for item in loc:
        annotation, _ = _unwrap(annotation)
        members = _sections(annotation)
        if members and isinstance(item, str) and item in _tags(annotation)[1]:
            tagged = [m for m in members if item in (_tag_field(m) or ("", ()))[1]]
            annotation = tagged[0]  # pydantic's path names the member it tried: not a key
            continue
        parts.append(str(item))
        constraints = []
        if _is_section(annotation):
            section, info = annotation, _field(annotation, item)
            annotation = info.annotation if info else None
            constraints = list(info.metadata) if info else []
        elif get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
        else:
            annotation = None
    annotation, extra = _unwrap(annotation)
    return ErrorLocation(".".join(parts), section, annotation, constraints + extra)


def show(value: Any) -> str:
    """A value as it would be typed in an override."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _choices(values: Sequence[Any]) -> str:
    shown = [show(v) if not isinstance(v, str) else v for v in values]
    return f"must be {shown[0]}" if len(shown) == 1 else f"must be one of {', '.join(shown)}"


SIGNS = {Gt: ">", Ge: ">=", Lt: "<", Le: "<="}
PYDANTIC_SIGNS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<"}


def _limit(bound: Gt | Ge | Lt | Le) -> Any:
    return getattr(bound, type(bound).__name__.lower())  # Gt(gt=0).gt


def _range(constraints: list[Any], kind: str, context: dict[str, Any]) -> str:
    """The key's whole range (`in [0, 1)`), not only the bound that the value broke."""
    low = next((c for c in constraints if isinstance(c, Gt | Ge)), None)
    high = next((c for c in constraints if isinstance(c, Lt | Le)), None)
    if low is not None and high is not None:
        left = "(" if isinstance(low, Gt) else "["
        right = ")" if isinstance(high, Lt) else "]"
        return f"must be in {left}{_limit(low)}, {_limit(high)}{right}"
    bound = low if low is not None else high
    if bound is not None:
        return f"must be {SIGNS[type(bound)]} {_limit(bound)}"
    return f"must be {PYDANTIC_SIGNS.get(kind, '<=')} {next(iter(context.values()))}"


def _length(constraints: list[Any], context: dict[str, Any]) -> str:
    low = next((c.min_length for c in constraints if isinstance(c, MinLen)), None)
    high = next((c.max_length for c in constraints if isinstance(c, MaxLen)), None)
    if low is not None and low == high:
        return f"must hold exactly {low} values"
    if context.get("min_length") == 1:
        return "must not be empty"
    if "min_length" in context:
        return f"must hold at least {context['min_length']} values"
    return f"must hold at most {context['max_length']} values"


def describe(error: dict[str, Any], root: type[BaseModel]) -> str:
    """One pydantic error as `key=value: what is allowed`."""
    kind, context = error["type"], error.get("ctx") or {}
    spot = locate(root, error["loc"])
    key, value = spot.key, error.get("input", ABSENT)
    if kind == "extra_forbidden":
        assert spot.section is not None
        allowed = [info.alias or name for name, info in spot.section.model_fields.items()]
        return f"{key}: unknown key (allowed: {', '.join(allowed)})"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag, values = _tags(spot.annotation)
        key = f"{key}.{tag}"
        value = context.get("tag", ABSENT)
        text = _choices(values) if kind == "union_tag_invalid" else f"missing; {_choices(values)}"
    elif kind == "conflict":
        key, value = f"{key}.{context['key']}", context.get("value", ABSENT)
        text = error["msg"]
    elif kind == "literal_error" and get_origin(spot.annotation) is Literal:
        text = _choices(get_args(spot.annotation))
    elif kind in BOUNDS:
        text = _range(spot.constraints, kind, context)
    elif kind in ("too_short", "too_long"):
        text = _length(spot.constraints, context)
    elif kind in KINDS:
        text = KINDS[kind]
    else:
        text = error["msg"][:1].lower() + error["msg"][1:]
    if kind == "missing" or value is ABSENT:
        return f"{key}: {text}"
    return f"{key}={show(value)}: {text}"


def one_line(error: ValidationError, root: type[BaseModel]) -> str:
    """The first error of the config: fixing it may settle the rest, and a user reads one line."""
    return " ".join(describe(error.errors()[0], root).split("\n"))
