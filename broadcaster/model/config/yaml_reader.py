"""Read one YAML file into plain data and the line of every value, refusing hostile input.

The file is read as a stream of parser events (libyaml's when PyYAML has it, else PyYAML's
own), so nothing is built twice and no step recurses. Three kinds of hostile file are
refused with a located error before they cost time or memory:

- an alias "bomb" ("billion laughs"): aliases may add at most `MAX_ALIAS_VALUES` values
  beyond what the file itself writes (a few kilobytes of nested aliases would otherwise
  expand to billions);
- a recursive alias (`&a [*a]`);
- nesting deeper than `MAX_DEPTH` levels, counted through aliases.

An alias shares the value of its anchor instead of copying it. Scalars follow YAML 1.2's
core schema (see `source`). Syntax errors are worded as PyYAML words them.

Lines are kept as a tree beside the data, compactly (a 60,000-target file has half a
million values): a scalar is its line (int); a collection is the tuple `(line, *children)`
with the children in the order of the data's items (a mapping's keys in order). A mapping
entry carries the line of its key. The tree survives a JSON round trip (tuples become
lists).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from sys import intern
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from broadcaster.errors import ConfigIssue

__all__ = [
    "MAX_ALIAS_VALUES",
    "MAX_DEPTH",
    "Lines",
    "Parsed",
    "format_path",
    "line_of",
    "parse_yaml",
]

Lines = Any  # int | tuple[int, *Lines] (lists after JSON)
Path_ = tuple[str | int, ...]

MAX_DEPTH = 100  # nesting levels
MAX_ALIAS_VALUES = 100_000  # values aliases may add beyond those written out
_REPEATS = 2_000  # distinct list items kept to share (tags repeat; phone numbers do not)

_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"
_CORE_TAGS = {
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:null",
}

# YAML 1.2 core schema: no sexagesimal numbers, no yes/no/on/off; dates as YYYY-MM-DD
_IMPLICIT = [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:timestamp", r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}$", "0123456789"),
]


_RESOLVERS: dict[str, list[tuple[str, re.Pattern[str]]]] = {}  # by first character
for _tag, _regexp, _first in _IMPLICIT:
    for _char in _first:
        _RESOLVERS.setdefault(_char, []).append((_tag, re.compile(_regexp)))


def format_path(path: Path_) -> str:
    """('rules', 3, 'channel') -> 'rules[3].channel'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def line_of(lines: Lines) -> int:
    """The line of a node of a lines tree."""
    return lines if isinstance(lines, int) else int(lines[0])


@dataclass
class Parsed:
    """One file read: its data (None when unusable), lines tree, and the problems found."""

    data: Any
    lines: Lines
    issues: list[ConfigIssue] = field(default_factory=list)
    ok: bool = True  # False: the file could not be read as YAML at all


class _Refused(Exception):
    """A guard stopped reading: hostile or absurd input."""

    def __init__(self, line: int, path: Path_, message: str):
        super().__init__(message)
        self.line, self.path, self.message = line, path, message


class _OwnComposerError(ComposerError):
    """A composer error found by this reader (worded as PyYAML's composer words it)."""


@dataclass
class _Anchored:
    data: Any
    lines: Lines
    size: int  # values, aliases expanded
    height: int  # nesting levels below it
    key_text: str | None  # the raw text of a scalar (usable as a key)
    merge: bool


class _Frame:
    __slots__ = (
        "anchor",
        "children",
        "data",
        "discard",
        "height",
        "is_map",
        "key",
        "key_line",
        "line",
        "path",
        "size",
        "skip",
        "want_key",
    )

    def __init__(self, is_map: bool, line: int, path: Path_, anchor: str | None, discard: bool):
        self.is_map = is_map
        self.line = line
        self.path = path
        self.anchor = anchor
        self.discard = discard
        self.data: Any = {} if is_map else []
        self.children: list[Lines] = []
        self.size = 1
        self.height = 1
        self.want_key = True
        self.key: str | None = None
        self.key_line = 0
        self.skip = False


def _scalar(value: str, tag: str | None, implicit: tuple[bool, bool], style: Any) -> Any:
    if tag is None or tag == "!":
        tag = _STR
        if implicit[0]:
            for candidate, regexp in _RESOLVERS.get(value[:1], ()):
                if regexp.match(value):
                    tag = candidate
                    break
    if tag == _STR and not style:
        return value
    if tag == _TIMESTAMP:
        try:
            return dt.date.fromisoformat("-".join(p.zfill(2) for p in value.split("-")))
        except ValueError:
            return value  # left as text: validation says the date does not exist
    if style or tag not in _CORE_TAGS:
        return value
    if tag == "tag:yaml.org,2002:bool":
        return value.lower() == "true"
    if tag == "tag:yaml.org,2002:int":
        return int(value, 0) if value[:2] in ("0o", "0x") else int(value)
    if tag == "tag:yaml.org,2002:float":
        lowered = value.lower().lstrip("+")
        special = {".inf": "inf", "-.inf": "-inf", ".nan": "nan"}
        return float(special.get(lowered, str(value)))
    return None  # null


def _is_merge(value: str, tag: str | None, implicit: tuple[bool, bool]) -> bool:
    return tag == _MERGE or (tag is None and implicit[0] and value == "<<")


class _Builder:
    """Turns parser events into data and lines, guarding size, depth and recursion."""

    def __init__(self, name: str):
        self.name = name
        self.issues: list[ConfigIssue] = []
        self.anchors: dict[str, _Anchored | None] = {}
        self.anchor_marks: dict[str, Any] = {}
        self.repeats: dict[str, str] = {}  # one string for text that repeats in lists
        self.stack: list[_Frame] = []
        self.written = 0
        self.expanded = 0
        self.root: tuple[Any, Lines] | None = None
        self.document_mark: Any = None

    def issue(self, line: int, path: Path_, message: str) -> None:
        if not (self.stack and self.stack[-1].discard):
            self.issues.append(ConfigIssue(self.name, line, format_path(path), message))

    def child_path(self) -> Path_:
        if not self.stack:
            return ()
        top = self.stack[-1]
        if not top.is_map:
            return (*top.path, len(top.data))
        if top.want_key or top.skip or top.key is None:
            return top.path
        return (*top.path, top.key)

    def run(self, get_event: Callable[[], Any]) -> None:
        """Consume events up to the end of the stream."""
        stack = self.stack
        resolvers = _RESOLVERS
        documents = 0
        need_mark = False
        while True:
            event = get_event()
            kind = type(event)
            if kind is ScalarEvent:
                self.written += 1
                line = event.start_mark.line + 1
                text = event.value
                if need_mark:
                    self.document_mark, need_mark = event.start_mark, False
                if event.tag is None and not event.style and text[:1] not in resolvers:
                    value: Any = text  # plain text: the common case
                    merge = text == "<<"
                else:
                    value = _scalar(text, event.tag, event.implicit, event.style)
                    merge = _is_merge(text, event.tag, event.implicit)
                if event.anchor is not None:
                    self.define(event.anchor, event.start_mark)
                    self.anchors[event.anchor] = _Anchored(value, line, 1, 0, text, merge)
                if not stack:
                    self.root = (value, line)
                    continue
                top = stack[-1]
                top.size += 1
                if not top.is_map:
                    if value is text and len(self.repeats) < _REPEATS:  # tags, audiences ...
                        value = self.repeats.setdefault(text, text)
                    top.data.append(value)
                    top.children.append(line)
                elif top.want_key:
                    if merge or text in top.data:
                        self.key(top, text, merge, line)
                    else:  # keys repeat on every item: one string each
                        top.key, top.key_line = intern(text), line
                        top.skip = top.want_key = False
                else:
                    top.want_key = True
                    if not top.skip:
                        top.data[top.key] = value
                        top.children.append(top.key_line)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                self.written += 1
                line = event.start_mark.line + 1
                if need_mark:
                    self.document_mark, need_mark = event.start_mark, False
                path = self.child_path()
                if len(stack) >= MAX_DEPTH:
                    raise _Refused(line, path, f"嵌套过深 nesting deeper than {MAX_DEPTH} levels")
                parent = stack[-1] if stack else None
                discard = parent is not None and (
                    parent.discard or (parent.is_map and (parent.want_key or parent.skip))
                )
                frame = _Frame(kind is MappingStartEvent, line, path, event.anchor, discard)
                if event.anchor is not None:
                    self.define(event.anchor, event.start_mark)
                    self.anchors[event.anchor] = None  # open: an alias to it now is recursive
                stack.append(frame)
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                frame = stack.pop()
                parent = stack[-1] if stack else None
                if (
                    frame.anchor is None
                    and parent is not None
                    and parent.is_map
                    and not parent.want_key
                    and not parent.skip
                ):  # the value of a key: its line is the key's
                    lines = (parent.key_line, *frame.children)
                else:
                    lines = (frame.line, *frame.children)
                if frame.anchor is not None:
                    self.anchors[frame.anchor] = _Anchored(
                        frame.data, lines, frame.size, frame.height, None, False
                    )
                if stack:
                    self.add(frame.data, lines, frame.size, frame.height, None, False)
                else:
                    self.root = (frame.data, lines)
            elif kind is AliasEvent:
                if need_mark:
                    self.document_mark, need_mark = event.start_mark, False
                self.alias(event)
            elif kind is DocumentStartEvent:
                documents += 1
                need_mark = True
                if documents > 1:
                    raise _OwnComposerError(
                        "expected a single document in the stream",
                        self.document_mark,
                        "but found another document",
                        event.start_mark,
                    )
            elif kind is StreamEndEvent:
                return

    def define(self, anchor: str, mark: Any) -> None:
        if anchor in self.anchor_marks:
            raise _OwnComposerError(
                f"found duplicate anchor {anchor!r}; first occurrence",
                self.anchor_marks[anchor],
                "second occurrence",
                mark,
            )
        self.anchor_marks[anchor] = mark

    def alias(self, event: Any) -> None:
        name = event.anchor
        line = event.start_mark.line + 1
        if name not in self.anchors:
            raise _OwnComposerError(None, None, f"found undefined alias {name!r}", event.start_mark)
        found = self.anchors[name]
        path = self.child_path()
        if found is None:
            raise _Refused(
                line, path, f"递归别名 recursive alias: '*{name}' is used inside its own anchor"
            )
        self.expanded += found.size
        if self.expanded > MAX_ALIAS_VALUES + self.written:
            raise _Refused(
                line,
                path,
                f"别名展开过多 aliases expand to more than {MAX_ALIAS_VALUES:,} values "
                f"('*{name}' adds {found.size:,}); write the values out",
            )
        if len(self.stack) + found.height > MAX_DEPTH:
            raise _Refused(
                line,
                path,
                f"嵌套过深 nesting deeper than {MAX_DEPTH} levels (through alias '*{name}')",
            )
        if not self.stack:
            self.root = (found.data, found.lines)
            return
        self.add(found.data, found.lines, found.size, found.height, found.key_text, found.merge)

    def add(
        self, value: Any, lines: Lines, size: int, height: int, key_text: str | None, merge: bool
    ) -> None:
        """A complete value inside the open collection on top of the stack."""
        top = self.stack[-1]
        top.size += size
        if height + 1 > top.height:
            top.height = height + 1
        if not top.is_map:
            top.data.append(value)
            top.children.append(lines)
        elif top.want_key:
            self.key(top, key_text, merge, line_of(lines))
        else:
            top.want_key = True
            if not top.skip:
                top.data[top.key] = value
                if isinstance(lines, int):
                    top.children.append(top.key_line)
                elif lines[0] == top.key_line:
                    top.children.append(lines)
                else:
                    top.children.append((top.key_line, *lines[1:]))

    def key(self, top: _Frame, key_text: str | None, merge: bool, line: int) -> None:
        """A complete key of the mapping on top of the stack: its value follows."""
        top.want_key = False
        top.skip = True
        if merge:
            self.issue(
                line, top.path, "不支持 YAML 合并键 '<<' is not supported; write the keys out"
            )
        elif key_text is None:
            self.issue(line, top.path, "键应为文本 expected a plain text key")
        elif key_text in top.data:
            first = line_of(top.children[list(top.data).index(key_text)])
            self.issue(
                line,
                (*top.path, key_text),
                f"重复的键 duplicate key; first defined on line {first}",
            )
        else:
            top.key, top.key_line, top.skip = intern(key_text), line, False


def _build_libyaml(raw: bytes, name: str) -> _Builder:
    parser = yaml.cyaml.CParser(raw)  # type: ignore[attr-defined]
    try:
        builder = _Builder(name)
        builder.run(parser.get_event)
        return builder
    finally:
        parser.dispose()


def _build_python(text: str, name: str) -> _Builder:
    loader = yaml.SafeLoader(text)  # its parser only: values are resolved here
    try:
        builder = _Builder(name)
        builder.run(loader.get_event)
        return builder
    finally:
        loader.dispose()


def _not_utf8(raw: bytes, exc: UnicodeDecodeError, name: str) -> ConfigIssue:
    line = raw.count(b"\n", 0, exc.start) + 1
    try:
        raw.decode("gb18030")
        looks = "it looks like GBK/GB18030"
    except UnicodeDecodeError:
        looks = f"byte 0x{raw[exc.start]:02x} on this line"
    return ConfigIssue(
        name,
        line,
        "",
        f"文件不是 UTF-8 编码 file is not UTF-8 ({looks}): save the file as UTF-8",
    )


def _syntax_issue(exc: yaml.YAMLError, text: str, name: str) -> ConfigIssue:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or "invalid YAML"
        context = exc.context_mark
        if context is not None and exc.context and (mark is None or context.line != mark.line):
            problem += f" ({exc.context} started on line {context.line + 1})"
        return ConfigIssue(name, line, "", f"YAML 语法错误 invalid YAML: {problem}")
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        return ConfigIssue(
            name,
            line,
            "",
            f"YAML 语法错误 invalid YAML: unacceptable character {what}: {exc.reason}",
        )
    return ConfigIssue(name, None, "", f"YAML 语法错误 invalid YAML: {exc}")


def parse_yaml(raw: bytes, name: str) -> Parsed:
    """Parse the bytes of one file (`name` is how messages show it)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Parsed(None, 1, [_not_utf8(raw, exc, name)], ok=False)
    try:
        try:
            if not yaml.__with_libyaml__:
                raise yaml.YAMLError("libyaml is not available")
            builder = _build_libyaml(raw, name)
        except _OwnComposerError:
            raise
        except yaml.YAMLError:
            # libyaml found a problem (or is missing): PyYAML's own parser decides and words it
            builder = _build_python(raw.decode("utf-8"), name)
    except _Refused as exc:
        return Parsed(
            None, 1, [ConfigIssue(name, exc.line, format_path(exc.path), exc.message)], ok=False
        )
    except yaml.YAMLError as exc:
        return Parsed(None, 1, [_syntax_issue(exc, raw.decode("utf-8"), name)], ok=False)
    if builder.root is None:
        return Parsed({}, 1, builder.issues)
    data, lines = builder.root
    return Parsed(data, lines, builder.issues)
