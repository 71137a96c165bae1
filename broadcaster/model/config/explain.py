"""Turn pydantic's validation errors into located, bilingual config issues."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from broadcaster.errors import ConfigIssue
from broadcaster.model.config.schema import SLUG, SLUG_MESSAGE
from broadcaster.model.config.source import Document, Path_

__all__ = ["did_you_mean", "explain"]


def did_you_mean(word: object, choices: typing.Iterable[str]) -> str | None:
    """'did you mean 'x'?' for a close match, else None."""
    if not isinstance(word, str):
        return None
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def _model_fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found by following `loc` from `model`."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return []
            annotation = field.annotation
        else:
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[-1] if args else None
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Optional[X] -> X; Annotated[X, ...] -> X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            annotation = models[0] if models else (args[0] if len(args) == 1 else annotation)
            if not models and len(args) != 1:
                return annotation
        else:
            return annotation


def _got(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(error: dict[str, Any], model: type[BaseModel]) -> tuple[str, str | None]:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    loc = tuple(p for p in error["loc"] if p != "[key]")
    if kind == "missing":
        return "缺少必填字段 missing required key", None
    if kind == "extra_forbidden":
        allowed = _model_fields_at(model, loc[:-1])
        expected = f"; expected one of {', '.join(allowed)}" if allowed else ""
        return f"未知字段 unknown key '{loc[-1]}'{expected}", did_you_mean(loc[-1], allowed)
    simple = {
        "string_type": "应为文本 expected text",
        "int_type": "应为整数 expected an integer",
        "int_parsing": "应为整数 expected an integer",
        "int_from_float": "应为整数 expected an integer",
        "float_type": "应为数字 expected a number",
        "float_parsing": "应为数字 expected a number",
        "bool_type": "应为 true 或 false expected true or false",
        "bool_parsing": "应为 true 或 false expected true or false",
        "list_type": "应为列表 expected a list",
        "tuple_type": "应为列表 expected a list",
        "dict_type": "应为映射 expected a mapping",
        "model_type": "应为映射 expected a mapping",
        "model_attributes_type": "应为映射 expected a mapping",
    }
    if kind in simple:
        return f"{simple[kind]}; got {_got(value)}", None
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == SLUG.pattern:
        return SLUG_MESSAGE.format(value=value), None
    if kind in ("literal_error", "enum"):
        expected = str(ctx.get("expected", ""))
        choices = [c.strip(" '") for c in expected.replace(" or ", ", ").split(",")]
        return f"取值无效 expected one of {expected}; got {_got(value)}", did_you_mean(
            value, choices
        )
    if kind == "too_short":
        return (
            f"至少需要 {ctx.get('min_length')} 项 expected at least {ctx.get('min_length')} item(s)",
            None,
        )
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = next(iter(ctx.values()), "")
        sign = {
            "greater_than": ">",
            "greater_than_equal": ">=",
            "less_than": "<",
            "less_than_equal": "<=",
        }[kind]
        return f"超出范围 expected a number {sign} {bound}; got {_got(value)}", None
    return error["msg"].removeprefix("Value error, "), None


def _data_loc(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """`loc` without pydantic's union-member tags: keep only parts that exist in the data
    (and the last part, which may be a missing key)."""
    out: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            node = node[part]
            out.append(part)
        elif i == len(loc) - 1 and isinstance(node, dict):
            out.append(part)  # a missing or unknown key
    return tuple(out)


def explain(
    exc: ValidationError,
    doc: Document,
    model: type[BaseModel],
    prefix: Path_ = (),
    data: Any = None,
) -> list[ConfigIssue]:
    """One located issue per place that failed, in file order."""
    data = doc.data if data is None else data
    by_place: dict[tuple[Any, ...], tuple[str, str | None]] = {}
    for error in exc.errors(include_url=False):
        raw = tuple(p for p in error["loc"] if p != "[key]")
        loc = _data_loc(data, raw)
        message, hint = _message({**error, "loc": raw}, model)
        if loc in by_place:  # alternatives of a union: one line, both expectations
            first, first_hint = by_place[loc]
            if message.split("; got")[0] not in first:
                head, _, got = first.partition("; got")
                message = f"{head} or {message.split('; got')[0].split(' ', 1)[-1]}" + (
                    f"; got{got}" if got else ""
                )
            else:
                message = first
            hint = first_hint or hint
        by_place[loc] = (message, hint)
    issues = [doc.issue((*prefix, *loc), m, hint=h) for loc, (m, h) in by_place.items()]
    issues.sort(key=lambda i: (i.file, i.line or 0))
    return issues
