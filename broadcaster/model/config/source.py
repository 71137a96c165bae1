"""Read YAML files into plain data, remembering where every value came from.

Scalars follow YAML 1.2's core schema rather than PyYAML's 1.1 defaults, so `10:00`
stays the string "10:00" (not 600), `on`/`no` stay strings, and `2027-02-30` reaches
validation as text instead of crashing the parser. Duplicate keys are errors.

`include:` at the top of a file pulls in more files (paths relative to the including
file, globs allowed): list sections are appended, mapping sections merged (a key
defined twice is an error naming both places).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from broadcaster.errors import ConfigIssue

__all__ = ["Document", "Mark", "format_path", "load_document"]

Path_ = tuple[str | int, ...]

LIST_SECTIONS = ("phases", "occasions", "targets", "rules", "duties", "templates")
MAP_SECTIONS = ("channels", "themes")
ROOT_ONLY = ("campaign", "calendar", "default_theme")


@dataclass(frozen=True)
class Mark:
    """Where a value was written: file, 1-based line, and its key path inside that file."""

    file: str
    line: int
    local: Path_


def format_path(path: Path_) -> str:
    """('rules', 3, 'channel') -> 'rules[3].channel'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars: no sexagesimal numbers, no yes/no/on/off."""


_Loader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        list("-+0123456789."),
    ),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:timestamp", r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}$", list("0123456789")),
]:
    _Loader.add_implicit_resolver(_tag, re.compile(_regexp), _first)


@dataclass
class Document:
    """The merged configuration as plain data, with a mark for every node."""

    data: dict[str, Any]
    marks: dict[Path_, Mark] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    root: Path | None = None

    def mark(self, path: Path_) -> Mark:
        """The mark of `path`, or of its nearest marked ancestor (for missing keys)."""
        probe = tuple(path)
        while probe:
            if probe in self.marks:
                found = self.marks[probe]
                if probe == tuple(path):
                    return found
                extra = tuple(path)[len(probe) :]
                return Mark(found.file, found.line, found.local + extra)
            probe = probe[:-1]
        if () in self.marks:
            m = self.marks[()]
            return Mark(m.file, m.line, tuple(path))
        return Mark(str(self.root or "?"), 1, tuple(path))

    def issue(
        self, path: Path_, message: str, *, severity: str = "error", hint: str | None = None
    ) -> ConfigIssue:
        m = self.mark(path)
        return ConfigIssue(m.file, m.line, format_path(m.local), message, severity, hint)


class _Reader:
    def __init__(self, base_dir: Path):
        self.base_dir = base_dir
        self.issues: list[ConfigIssue] = []
        self.marks: dict[Path_, Mark] = {}
        self.files: list[Path] = []

    def display(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.base_dir))
        except ValueError:
            return str(path)

    def read(
        self, path: Path, stack: tuple[Path, ...]
    ) -> tuple[dict[str, Any] | None, dict[Path_, Mark]]:
        """Parse one file into data and local marks (keyed by local path)."""
        name = self.display(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.issues.append(ConfigIssue(name, None, "", "文件不存在 file not found"))
            return None, {}
        except (OSError, UnicodeDecodeError) as exc:
            self.issues.append(ConfigIssue(name, None, "", f"无法读取 cannot read file: {exc}"))
            return None, {}
        try:
            node = yaml.compose(text, Loader=_Loader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            problem = exc.problem or "invalid YAML"
            context = exc.context_mark
            if context is not None and exc.context and (mark is None or context.line != mark.line):
                problem += f" ({exc.context} started on line {context.line + 1})"
            self.issues.append(
                ConfigIssue(name, line, "", f"YAML 语法错误 invalid YAML: {problem}")
            )
            return None, {}
        self.files.append(path)
        if node is None:
            return {}, {(): Mark(name, 1, ())}
        local: dict[Path_, Mark] = {}
        data = self.convert(node, (), name, local)
        if not isinstance(data, dict):
            self.issues.append(
                ConfigIssue(
                    name,
                    node.start_mark.line + 1,
                    "",
                    "顶层应为映射 expected a mapping of sections at the top level",
                )
            )
            return None, local
        return data, local

    def convert(self, node: yaml.Node, path: Path_, name: str, marks: dict[Path_, Mark]) -> Any:
        marks[path] = Mark(name, node.start_mark.line + 1, path)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.issues.append(
                        ConfigIssue(
                            name,
                            key_node.start_mark.line + 1,
                            format_path(path),
                            "不支持 YAML 合并键 '<<' is not supported; write the keys out",
                        )
                    )
                    continue
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is None:
                    self.issues.append(
                        ConfigIssue(
                            name,
                            key_node.start_mark.line + 1,
                            format_path(path),
                            "键应为文本 expected a plain text key",
                        )
                    )
                    continue
                if key in out:
                    first = marks[(*path, key)].line
                    self.issues.append(
                        ConfigIssue(
                            name,
                            key_node.start_mark.line + 1,
                            format_path((*path, key)),
                            f"重复的键 duplicate key; first defined on line {first}",
                        )
                    )
                    continue
                out[key] = self.convert(value_node, (*path, key), name, marks)
                marks[(*path, key)] = Mark(name, key_node.start_mark.line + 1, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [
                self.convert(item, (*path, i), name, marks) for i, item in enumerate(node.value)
            ]
        assert isinstance(node, yaml.ScalarNode)
        return self.scalar(node)

    @staticmethod
    def scalar(node: yaml.ScalarNode) -> Any:
        if node.tag == "tag:yaml.org,2002:timestamp":
            try:
                return dt.date.fromisoformat("-".join(p.zfill(2) for p in node.value.split("-")))
            except ValueError:
                return node.value  # left as text: validation says the date does not exist
        value = node.value
        if node.style or node.tag not in _CORE_TAGS:
            return value
        if node.tag == "tag:yaml.org,2002:bool":
            return value.lower() == "true"
        if node.tag == "tag:yaml.org,2002:int":
            return int(value, 0) if value[:2] in ("0o", "0x") else int(value)
        if node.tag == "tag:yaml.org,2002:float":
            lowered = value.lower().lstrip("+")
            special = {".inf": "inf", "-.inf": "-inf", ".nan": "nan"}
            return float(special.get(lowered, str(value)))
        return None  # null


_CORE_TAGS = {
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:null",
}


def load_document(path: Path) -> tuple[Document, list[ConfigIssue]]:
    """Load `path` and everything it includes; return the merged document and any issues."""
    path = path.resolve()
    reader = _Reader(path.parent)
    merged: dict[str, Any] = {}
    merged_marks: dict[Path_, Mark] = {}
    _merge_file(reader, path, (), merged, merged_marks, root=True)
    doc = Document(merged, merged_marks, reader.files, path)
    return doc, reader.issues


def _merge_file(
    reader: _Reader,
    path: Path,
    stack: tuple[Path, ...],
    merged: dict[str, Any],
    marks: dict[Path_, Mark],
    *,
    root: bool,
    include_mark: Mark | None = None,
) -> None:
    data, local = reader.read(path, stack)
    if data is None:
        return
    if root:
        marks[()] = local.get((), Mark(reader.display(path), 1, ()))
    includes = data.pop("include", None)
    name = reader.display(path)
    for key, value in data.items():
        key_mark = local[(key,)]
        if not root and key in ROOT_ONLY:
            reader.issues.append(
                ConfigIssue(
                    name,
                    key_mark.line,
                    key,
                    f"只能写在主配置文件中 '{key}' belongs in the main file only, not in an include",
                )
            )
            continue
        if key not in merged:
            merged[key] = [] if key in LIST_SECTIONS else {} if key in MAP_SECTIONS else value
            marks[(key,)] = key_mark
            if key not in LIST_SECTIONS and key not in MAP_SECTIONS:
                _copy_marks(local, (key,), (key,), marks)
                continue
        if key in LIST_SECTIONS:
            if not isinstance(value, list):
                reader.issues.append(
                    ConfigIssue(name, key_mark.line, key, "应为列表 expected a list")
                )
                continue
            offset = len(merged[key])
            merged[key].extend(value)
            for i in range(len(value)):
                _copy_marks(local, (key, i), (key, offset + i), marks)
        elif key in MAP_SECTIONS:
            if not isinstance(value, dict):
                reader.issues.append(
                    ConfigIssue(name, key_mark.line, key, "应为映射 expected a mapping")
                )
                continue
            for sub, sub_value in value.items():
                if sub in merged[key]:
                    first = marks[(key, sub)]
                    reader.issues.append(
                        ConfigIssue(
                            name,
                            local[(key, sub)].line,
                            f"{key}.{sub}",
                            f"重复定义 defined twice; first at {first.file}:{first.line}",
                        )
                    )
                    continue
                merged[key][sub] = sub_value
                _copy_marks(local, (key, sub), (key, sub), marks)
        else:
            first = marks[(key,)]
            reader.issues.append(
                ConfigIssue(
                    name,
                    key_mark.line,
                    key,
                    f"重复定义 defined twice; first at {first.file}:{first.line}",
                )
            )
    if includes is None:
        return
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list):
        m = local[("include",)]
        reader.issues.append(
            ConfigIssue(name, m.line, "include", "应为文件列表 expected a list of file paths")
        )
        return
    chain = (*stack, path)
    for i, pattern in enumerate(includes):
        m = local.get(("include", i), local[("include",)])
        if not isinstance(pattern, str):
            reader.issues.append(
                ConfigIssue(name, m.line, f"include[{i}]", "应为文件路径 expected a file path")
            )
            continue
        targets = (
            sorted(path.parent.glob(pattern))
            if any(c in pattern for c in "*?[")
            else [path.parent / pattern]
        )
        if not targets:
            reader.issues.append(
                ConfigIssue(
                    name, m.line, f"include[{i}]", f"没有匹配的文件 no file matches '{pattern}'"
                )
            )
        for target in targets:
            target = target.resolve()
            if target in chain:
                cycle = " → ".join(
                    reader.display(p) for p in (*chain[chain.index(target) :], target)
                )
                reader.issues.append(
                    ConfigIssue(name, m.line, f"include[{i}]", f"循环引用 include cycle: {cycle}")
                )
                continue
            _merge_file(reader, target, chain, merged, marks, root=False, include_mark=m)


def _copy_marks(local: dict[Path_, Mark], src: Path_, dst: Path_, marks: dict[Path_, Mark]) -> None:
    n = len(src)
    for p, m in local.items():
        if p[:n] == src:
            marks[dst + p[n:]] = m
