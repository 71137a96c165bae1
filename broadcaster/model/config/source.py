"""Read YAML files into plain data, remembering where every value came from.

Scalars follow YAML 1.2's core schema rather than PyYAML's 1.1 defaults, so `10:00`
stays the string "10:00" (not 600), `on`/`no` stay strings, and `2027-02-30` reaches
validation as text instead of crashing the parser. Duplicate keys are errors, and so
are files that are not UTF-8, alias bombs, recursive aliases and absurd nesting
(`yaml_reader`).

`include:` at the top of a file pulls in more files (paths relative to the including
file, globs allowed): list sections are appended, mapping sections merged (a key
defined twice is an error naming both places).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broadcaster.errors import ConfigIssue
from broadcaster.model.config.yaml_reader import Lines, format_path, line_of, parse_yaml

if TYPE_CHECKING:
    from broadcaster.model.config.cache import ConfigCache, Manifest

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


class _Where:
    """A node of the merged lines tree that comes from `file`, at `local` inside it; `data`
    is the value the lines belong to (a parsed collection's lines follow its items)."""

    __slots__ = ("data", "file", "lines", "local")

    def __init__(self, file: str, local: Path_, lines: Lines, data: Any):
        self.file, self.local, self.lines, self.data = file, local, lines, data


class _Merged:
    """A collection merged from several files: its children are `_Where`s."""

    __slots__ = ("children", "line")

    def __init__(self, line: int, children: dict[str, _Where] | list[_Where]):
        self.line, self.children = line, children


@dataclass
class Document:
    """The merged configuration as plain data, with the line of every value."""

    data: dict[str, Any]
    lines: _Where | None = None
    files: list[Path] = field(default_factory=list)
    root: Path | None = None

    def mark(self, path: Path_) -> Mark:
        """The mark of `path`, or of its nearest marked ancestor (for missing keys)."""
        path = tuple(path)
        node: Any = self.lines
        if node is None:
            return Mark(str(self.root or "?"), 1, path)
        data: Any = None
        base: Path_ = ()
        file, base_at, line = "?", 0, 1
        i = 0
        while True:
            if isinstance(node, _Where):
                file, base, base_at = node.file, node.local, i
                node, data = node.lines, node.data
            if isinstance(node, _Merged):
                line = node.line
                if i == len(path):
                    break
                node = _child(node.children, path[i])
                if node is None:
                    break
                i += 1
                continue
            line = line_of(node)
            if i == len(path) or isinstance(node, int):
                break
            part = path[i]
            if isinstance(data, dict) and isinstance(part, str) and part in data:
                node, data = node[1 + list(data).index(part)], data[part]
            elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
                node, data = node[1 + part], data[part]
            else:
                break
            i += 1
        return Mark(file, line, base + path[base_at:])

    def issue(
        self, path: Path_, message: str, *, severity: str = "error", hint: str | None = None
    ) -> ConfigIssue:
        m = self.mark(path)
        return ConfigIssue(m.file, m.line, format_path(m.local), message, severity, hint)


def _child(children: dict[str, _Where] | list[_Where], part: str | int) -> _Where | None:
    if isinstance(children, dict):
        return children.get(part) if isinstance(part, str) else None
    if isinstance(part, int) and 0 <= part < len(children):
        return children[part]
    return None


class _Reader:
    def __init__(self, base_dir: Path, cache: ConfigCache | None, manifest: Manifest | None):
        self.base_dir = base_dir
        self.cache = cache
        self.manifest = manifest
        self.issues: list[ConfigIssue] = []
        self.files: list[Path] = []

    def display(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.base_dir))
        except ValueError:
            return str(path)

    def read(self, path: Path) -> tuple[dict[str, Any] | None, Lines]:
        """Parse one file into data and its lines tree."""
        name = self.display(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            if self.manifest is not None:
                self.manifest.file(path, None)
            self.issues.append(ConfigIssue(name, None, "", "文件不存在 file not found"))
            return None, 1
        except OSError as exc:
            if self.manifest is not None:
                self.manifest.file(path, None)
            self.issues.append(ConfigIssue(name, None, "", f"无法读取 cannot read file: {exc}"))
            return None, 1
        if self.cache is not None:
            parsed = self.cache.yaml(path, raw, name, self.manifest)
        else:
            parsed = parse_yaml(raw, name)
        self.issues += parsed.issues
        if not parsed.ok:
            return None, 1
        self.files.append(path)
        if not isinstance(parsed.data, dict):
            self.issues.append(
                ConfigIssue(
                    name,
                    line_of(parsed.lines),
                    "",
                    "顶层应为映射 expected a mapping of sections at the top level",
                )
            )
            return None, parsed.lines
        return parsed.data, parsed.lines


def load_document(
    path: Path, *, cache: ConfigCache | None = None, manifest: Manifest | None = None
) -> tuple[Document, list[ConfigIssue]]:
    """Load `path` and everything it includes; return the merged document and any issues.

    With a `cache`, files already parsed (same bytes) are not parsed again; a `manifest`
    records every file and folder listing read, to tell later whether anything changed.
    """
    path = path.resolve()
    reader = _Reader(path.parent, cache, manifest)
    merged: dict[str, Any] = {}
    top: dict[str, Any] = {}
    root = _merge_file(reader, path, (), merged, top, root=True)
    doc = Document(merged, root, reader.files, path)
    return doc, reader.issues


def _by_key(data: dict[str, Any], lines: Lines) -> dict[str, Lines]:
    """The lines of a parsed mapping's entries by key."""
    return {} if isinstance(lines, int) else dict(zip(data, lines[1:], strict=True))


def _items(lines: Lines) -> list[Lines]:
    return [] if isinstance(lines, int) else list(lines[1:])


def _merge_file(
    reader: _Reader,
    path: Path,
    stack: tuple[Path, ...],
    merged: dict[str, Any],
    top: dict[str, Any],
    *,
    root: bool,
) -> _Where | None:
    """Merge one file (and its includes) into `merged`; `top` is the merged lines of the
    top-level keys. Returns the root of the merged lines tree for the main file."""
    data, lines = reader.read(path)
    if data is None:
        return None
    name = reader.display(path)
    local = _by_key(data, lines)
    where = _Where(name, (), _Merged(line_of(lines), top), merged) if root else None
    for key, value in data.items():
        if key == "include":
            continue
        key_line = line_of(local[key])
        if not root and key in ROOT_ONLY:
            reader.issues.append(
                ConfigIssue(
                    name,
                    key_line,
                    key,
                    f"只能写在主配置文件中 '{key}' belongs in the main file only, not in an include",
                )
            )
            continue
        if key not in merged:
            if key in LIST_SECTIONS or key in MAP_SECTIONS:
                merged[key] = [] if key in LIST_SECTIONS else {}
                section = _Merged(key_line, [] if key in LIST_SECTIONS else {})
                top[key] = _Where(name, (key,), section, merged[key])
            else:
                merged[key] = value
                top[key] = _Where(name, (key,), local[key], value)
                continue
        if key in LIST_SECTIONS:
            if not isinstance(value, list):
                reader.issues.append(ConfigIssue(name, key_line, key, "应为列表 expected a list"))
                continue
            items = top[key].lines.children
            for i, (item, item_lines) in enumerate(zip(value, _items(local[key]), strict=True)):
                items.append(_Where(name, (key, i), item_lines, item))
            merged[key].extend(value)
        elif key in MAP_SECTIONS:
            if not isinstance(value, dict):
                reader.issues.append(
                    ConfigIssue(name, key_line, key, "应为映射 expected a mapping")
                )
                continue
            subs = top[key].lines.children
            sub_lines = _by_key(value, local[key])
            for sub, sub_value in value.items():
                if sub in merged[key]:
                    first = subs[sub]
                    reader.issues.append(
                        ConfigIssue(
                            name,
                            line_of(sub_lines[sub]),
                            f"{key}.{sub}",
                            f"重复定义 defined twice; first at {first.file}:{line_of(first.lines)}",
                        )
                    )
                    continue
                merged[key][sub] = sub_value
                subs[sub] = _Where(name, (key, sub), sub_lines[sub], sub_value)
        else:
            first = top[key]
            first_line = (
                first.lines.line if isinstance(first.lines, _Merged) else line_of(first.lines)
            )
            reader.issues.append(
                ConfigIssue(
                    name,
                    key_line,
                    key,
                    f"重复定义 defined twice; first at {first.file}:{first_line}",
                )
            )
    if "include" in data:
        _includes(reader, path, stack, data["include"], local["include"], merged, top)
    return where


def _includes(
    reader: _Reader,
    path: Path,
    stack: tuple[Path, ...],
    includes: Any,
    lines: Lines,
    merged: dict[str, Any],
    top: dict[str, Any],
) -> None:
    name = reader.display(path)
    if includes is None:
        return
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list):
        reader.issues.append(
            ConfigIssue(
                name, line_of(lines), "include", "应为文件列表 expected a list of file paths"
            )
        )
        return
    chain = (*stack, path)
    item_lines = _items(lines)
    for i, pattern in enumerate(includes):
        line = line_of(item_lines[i]) if i < len(item_lines) else line_of(lines)
        if not isinstance(pattern, str):
            reader.issues.append(
                ConfigIssue(name, line, f"include[{i}]", "应为文件路径 expected a file path")
            )
            continue
        if any(c in pattern for c in "*?["):
            targets = sorted(path.parent.glob(pattern))
            if reader.manifest is not None:
                reader.manifest.glob(path.parent, pattern, targets)
        else:
            targets = [path.parent / pattern]
        if not targets:
            reader.issues.append(
                ConfigIssue(
                    name, line, f"include[{i}]", f"没有匹配的文件 no file matches '{pattern}'"
                )
            )
        for target in targets:
            target = target.resolve()
            if target in chain:
                cycle = " → ".join(
                    reader.display(p) for p in (*chain[chain.index(target) :], target)
                )
                reader.issues.append(
                    ConfigIssue(name, line, f"include[{i}]", f"循环引用 include cycle: {cycle}")
                )
                continue
            _merge_file(reader, target, chain, merged, top, root=False)
