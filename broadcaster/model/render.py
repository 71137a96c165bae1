"""Render message templates: sandboxed Jinja2, undefined variables are errors.

Templates live in `messages/<kind>/<name>.j2` (kind = sms, bot, led, loudspeaker),
with optional audience variants `<name>.<audience>.j2` that win over the plain one.
An office's own template folders are searched before the built-in library, so a
file there replaces the built-in of the same name. Shared fragments sit in
`_fragments/`. Fraud-type topics are described in `topics.yaml`.
"""

from __future__ import annotations

import hashlib
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import (
    ChainableUndefined,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    Undefined,
    meta,
    nodes,
)
from jinja2.sandbox import SandboxedEnvironment

from broadcaster.errors import TemplateError
from broadcaster.vocab import MessageKind

__all__ = [
    "RENDER_FAILED",
    "UNDEFINED",
    "WEEKDAY_NAMES",
    "Renderer",
    "Topic",
    "builtin_messages_dir",
]

RENDER_FAILED = "模板渲染失败 render failed"
UNDEFINED = "未定义的变量 undefined variable"
WEEKDAY_NAMES = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")


def builtin_messages_dir() -> Path:
    return Path(str(resources.files("broadcaster.messages")))


@dataclass(frozen=True)
class Topic:
    """A fraud type the template library covers."""

    id: str
    name: str
    en: str
    slogan: str
    audiences: tuple[str, ...] = ()

    def as_context(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "en": self.en, "slogan": self.slogan}


def _location(exc: BaseException, fallback: str) -> str:
    """'file:line' of the template frame where a render error happened."""
    if isinstance(exc, TemplateSyntaxError):
        return f"{exc.filename or exc.name or fallback}:{exc.lineno}"
    for frame, lineno in reversed(list(traceback.walk_tb(exc.__traceback__))):
        name = frame.f_code.co_filename
        if name.endswith(".j2"):
            return f"{name}:{lineno}"
    return fallback


def _dotted(node: nodes.Node) -> str | None:
    """ "a.b.c" for a chain of attribute or constant-key lookups on a name, else None."""
    parts: list[str] = []
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str | int):
            parts.append(str(node.arg.value))
        else:
            parts.clear()  # a computed key: the value read is the container
        node = node.node
    if isinstance(node, nodes.Name) and node.ctx == "load":
        return ".".join([node.name, *reversed(parts)])
    return None


def _lookup(context: Mapping[str, Any], path: str) -> str | None:
    """The value at a dotted path as text; None when absent or not a plain value."""
    value: Any = context
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
        if value is None:
            return None
    if isinstance(value, str | int | float):
        return str(value)
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    if isinstance(value, list | tuple):
        return "、".join(str(v) for v in value)
    return None


_uses: ContextVar[list[tuple[str, int | None, str]]] = ContextVar("undefined_uses")


class _Quiet(ChainableUndefined):
    """What an undefined use turns into once recorded: nothing more is reported from it."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = _fail_with_undefined_error
    __mul__ = __rmul__ = __div__ = __rdiv__ = _fail_with_undefined_error
    __truediv__ = __rtruediv__ = _fail_with_undefined_error
    __floordiv__ = __rfloordiv__ = _fail_with_undefined_error
    __mod__ = __rmod__ = _fail_with_undefined_error
    __pos__ = __neg__ = __call__ = __pow__ = __rpow__ = _fail_with_undefined_error
    __lt__ = __le__ = __gt__ = __ge__ = _fail_with_undefined_error


class _Recording(Undefined):
    """Undefined where StrictUndefined would stop the render: records the use (template
    file and line, StrictUndefined's own words) and lets the render go on."""

    __slots__ = ()

    def _record(self) -> None:
        frame = sys._getframe(2)
        file, line = "?", None
        while frame is not None:
            template = frame.f_globals.get("__jinja_template__")
            if template is not None:
                file = template.filename or template.name or "?"
                line = template.get_corresponding_lineno(frame.f_lineno)
                break
            frame = frame.f_back  # type: ignore[assignment]
        _uses.get().append((file, line, self._undefined_message))

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        self._record()
        return _Quiet()

    __add__ = __radd__ = __sub__ = __rsub__ = _fail_with_undefined_error
    __mul__ = __rmul__ = __div__ = __rdiv__ = _fail_with_undefined_error
    __truediv__ = __rtruediv__ = _fail_with_undefined_error
    __floordiv__ = __rfloordiv__ = _fail_with_undefined_error
    __mod__ = __rmod__ = _fail_with_undefined_error
    __pos__ = __neg__ = __call__ = __getitem__ = _fail_with_undefined_error
    __lt__ = __le__ = __gt__ = __ge__ = __pow__ = __rpow__ = _fail_with_undefined_error
    __int__ = __float__ = __complex__ = _fail_with_undefined_error

    def __getattr__(self, name: str) -> Any:
        if name[:2] == "__":
            raise AttributeError(name)
        self._record()
        return _Quiet()

    def __str__(self) -> str:
        self._record()
        return ""

    def __iter__(self) -> Any:
        self._record()
        return iter(())

    def __len__(self) -> int:
        self._record()
        return 0

    def __bool__(self) -> bool:
        self._record()
        return False

    def __eq__(self, other: object) -> bool:
        self._record()
        return False

    def __ne__(self, other: object) -> bool:
        self._record()
        return True

    def __hash__(self) -> int:
        self._record()
        return id(self)

    def __contains__(self, item: object) -> bool:
        self._record()
        return False


def _tidy(kind: MessageKind, text: str) -> str:
    if kind in (MessageKind.SMS, MessageKind.LED):
        return re.sub(r"\s*\n\s*", "", text).strip()
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


class Renderer:
    """Finds, checks and renders templates; caches renders by what a template reads."""

    def __init__(self, office_dirs: Iterable[Path] = ()):
        self.dirs = [*office_dirs, builtin_messages_dir()]
        self.env = SandboxedEnvironment(
            loader=FileSystemLoader([str(d) for d in self.dirs]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            autoescape=False,
        )
        self._cache: dict[tuple[Any, ...], str] = {}
        self._params: dict[tuple[Any, ...], dict[str, str]] = {}
        self._reads: dict[str, frozenset[str]] = {}
        self._paths: dict[str, tuple[str, ...]] = {}
        self._sha: dict[str, str] = {}
        self._names: dict[tuple[str, str, str | None], str | None] = {}
        self._asts: dict[str, nodes.Template] = {}
        self._recording: SandboxedEnvironment | None = None

    # -- topics

    @cached_property
    def topics(self) -> dict[str, Topic]:
        """Fraud types: the built-in catalogue, extended or overridden by office folders.

        Read with the configuration's hardened YAML reader; a broken file raises
        TemplateError "file:line: message"."""
        from broadcaster.model.config.yaml_reader import line_of, parse_yaml

        out: dict[str, Topic] = {}
        for folder in reversed(self.dirs):
            path = folder / "topics.yaml"
            if not path.exists():
                continue
            cannot = "无法读取 cannot read topics"
            try:
                parsed = parse_yaml(path.read_bytes(), str(path))
            except OSError as exc:
                raise TemplateError(f"{path}: {cannot}: {exc.strerror}") from None
            problem = next((i for i in parsed.issues if i.severity == "error"), None)
            if problem is not None:
                where = f"{path}:{problem.line}" if problem.line else str(path)
                raise TemplateError(f"{where}: {cannot}: {problem.message}")
            raw = {} if parsed.data is None else parsed.data
            if not isinstance(raw, dict):
                raise TemplateError(
                    f"{path}:{line_of(parsed.lines)}: {cannot}: expected a mapping of topic ids"
                )
            lines = [] if isinstance(parsed.lines, int) else parsed.lines[1:]
            for (tid, item), item_lines in zip(raw.items(), lines, strict=True):
                if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                    raise TemplateError(
                        f"{path}:{line_of(item_lines)}: {cannot}: {tid}: expected a mapping with"
                        " name, en, slogan, audiences"
                    )
                out[tid] = Topic(
                    tid,
                    item["name"],
                    item.get("en", ""),
                    item.get("slogan", ""),
                    tuple(item.get("audiences", ())),
                )
        return out

    # -- lookup

    def template_name(self, kind: MessageKind, name: str, audience: str | None) -> str | None:
        """The template for (kind, topic or template name, audience), or None if there is none."""
        key = (kind.value, name, audience)
        if key not in self._names:
            candidates = [f"{kind.value}/{name}.{audience}.j2"] if audience else []
            candidates.append(f"{kind.value}/{name}.j2")
            found = None
            for candidate in candidates:
                try:
                    self.env.loader.get_source(self.env, candidate)  # type: ignore[union-attr]
                except TemplateNotFound:
                    continue
                found = candidate
                break
            self._names[key] = found
        return self._names[key]

    def source(self, name: str) -> tuple[str, str]:
        """(source text, file path) of a template."""
        source, filename, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
        return source, filename or name

    def list_templates(self) -> list[str]:
        return sorted(
            n for n in self.env.list_templates(extensions=["j2"]) if not n.startswith("_")
        )

    def _parse(self, name: str) -> nodes.Template:
        """The template's syntax tree, parsed once."""
        ast = self._asts.get(name)
        if ast is None:
            source, filename = self.source(name)
            try:
                ast = self.env.parse(source, name, filename)
            except TemplateSyntaxError as exc:
                raise TemplateError(
                    f"{_location(exc, filename)}: 模板语法错误 template syntax error: {exc.message}"
                ) from None
            self._asts[name] = ast
        return ast

    def _closure(self, name: str, seen: set[str] | None = None) -> list[str]:
        """The template and every template it includes or imports, recursively."""
        seen = seen if seen is not None else set()
        if name in seen:
            return []
        seen.add(name)
        out = [name]
        for ref in meta.find_referenced_templates(self._parse(name)):
            if ref is not None:
                out += self._closure(ref, seen)
        return out

    def reads(self, name: str) -> frozenset[str]:
        """Context variables the template (with its fragments) reads."""
        if name not in self._reads:
            names: set[str] = set()
            for part in self._closure(name):
                names |= meta.find_undeclared_variables(self._parse(part))
            self._reads[name] = frozenset(names)
        return self._reads[name]

    def paths(self, name: str) -> tuple[str, ...]:
        """Dotted paths of the values the template reads ("topic.name", "vars.hotline")."""
        if name not in self._paths:
            found: set[str] = set()
            for part in self._closure(name):
                ast = self._parse(part)
                roots = meta.find_undeclared_variables(ast)
                for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
                    path = _dotted(node)
                    if path and path.split(".")[0] in roots:
                        found.add(path)
            longest = {p for p in found if not any(o.startswith(p + ".") for o in found)}
            self._paths[name] = tuple(sorted(longest))
        return self._paths[name]

    def sha(self, name: str) -> str:
        """Version of a template: sha256 over its source and its fragments' sources."""
        if name not in self._sha:
            digest = hashlib.sha256()
            for part in self._closure(name):
                digest.update(part.encode())
                digest.update(self.source(part)[0].encode())
            self._sha[name] = digest.hexdigest()
        return self._sha[name]

    # -- rendering

    def render_with_params(
        self,
        name: str,
        kind: MessageKind,
        context: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
        cache_key: Mapping[str, Any] | None = None,
    ) -> tuple[str, dict[str, str]]:
        """`render`, plus the values the template read: what an approved-template provider
        (Aliyun TemplateParam, Tencent TemplateParamSet) is sent instead of the text."""
        made: list[Mapping[str, Any]] = []

        def once() -> Mapping[str, Any]:
            if not made:
                made.append(context() if callable(context) else context)
            return made[0]

        text = self.render(name, kind, once, cache_key)
        key = None
        if cache_key is not None:
            key = (name, *(cache_key.get(v) for v in sorted(self.reads(name))))
            hit = self._params.get(key)
            if hit is not None:
                return text, hit
        values = once()
        params = {p: v for p in self.paths(name) if (v := _lookup(values, p)) is not None}
        if key is not None:
            if len(self._params) > 200_000:
                self._params.clear()
            self._params[key] = params
        return text, params

    def undefined_uses(
        self, name: str, context: Mapping[str, Any]
    ) -> list[tuple[str, int | None, str]]:
        """Every use of an undefined variable in rendering `name` with `context`, as
        (template file, line, message): where the normal render stops at the first."""
        if self._recording is None:
            self._recording = SandboxedEnvironment(
                loader=self.env.loader,
                undefined=_Recording,
                trim_blocks=True,
                lstrip_blocks=True,
                keep_trailing_newline=False,
                autoescape=False,
            )
        found: list[tuple[str, int | None, str]] = []
        token = _uses.set(found)
        try:
            self._recording.get_template(name).render(context)
        except Exception:  # what was recorded before another failure still counts
            pass
        finally:
            _uses.reset(token)
        return list(dict.fromkeys(found))

    def render(
        self,
        name: str,
        kind: MessageKind,
        context: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
        cache_key: Mapping[str, Any] | None = None,
    ) -> str:
        """Render `name` with `context` (or a function making it, called only on a cache miss);
        renders whose read variables have equal `cache_key` values are done once."""
        if cache_key is not None:
            key = (name, *(cache_key.get(v) for v in sorted(self.reads(name))))
            hit = self._cache.get(key)
            if hit is not None:
                return hit
        filename = name
        try:
            _source, filename = self.source(name)
            template = self.env.get_template(name)
            text = _tidy(kind, template.render(context() if callable(context) else context))
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"{_location(exc, filename)}: 模板语法错误 template syntax error: {exc.message}"
            ) from None
        except TemplateNotFound as exc:
            raise TemplateError(f"{filename}: 找不到模板 template not found: {exc.name}") from None
        except Exception as exc:  # undefined variables, sandbox violations, filter errors
            reason = str(exc)
            if type(exc).__name__ == "UndefinedError":
                reason = f"{UNDEFINED}: {reason}"
            raise TemplateError(f"{_location(exc, filename)}: {RENDER_FAILED}: {reason}") from None
        if cache_key is not None:
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[key] = text
        return text
