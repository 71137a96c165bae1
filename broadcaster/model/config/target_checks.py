"""The targets section as a tree: ids unique, parents found, inherited audience and
variables resolved top-down, contact lists read (through the cache) and checked."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from broadcaster.errors import ConfigIssue
from broadcaster.led.playlist import ScreenSpec
from broadcaster.model.config.cache import ConfigCache, Manifest
from broadcaster.model.config.explain import did_you_mean
from broadcaster.model.config.led_checks import screen_problems, screen_spec
from broadcaster.model.config.schema import Config, Target
from broadcaster.model.config.source import Document, Path_
from broadcaster.model.targets import (
    AddressSpec,
    Contact,
    ContactFilter,
    ContactProblem,
    TargetNode,
    TargetTree,
    mask_phone,
    parse_phone,
)
from broadcaster.recipients.reader import RecipientRow, contacts_of
from broadcaster.recipients.store import RecipientStore

__all__ = ["TargetChecks"]


class TargetChecks:
    """Mixed into the config builder: needs `doc`, `config`, `cache`, `manifest`, `issues`,
    `contact_files`, `base_dir`, `error`, `warn` and `_shown`."""

    doc: Document
    config: Config
    cache: ConfigCache
    manifest: Manifest
    issues: list[ConfigIssue]
    contact_files: set[Path]
    base_dir: Path
    recipient_store: RecipientStore | None

    def error(self, path: Path_, message: str, hint: str | None = None) -> None:
        raise NotImplementedError  # provided by the builder

    def warn(self, path: Path_, message: str) -> None:
        raise NotImplementedError  # provided by the builder

    def _shown(self, p: Path) -> str:
        raise NotImplementedError  # provided by the builder

    def _targets(self) -> tuple[TargetTree, dict[str, dict[str, Any]]]:
        nodes: dict[str, Target] = {}
        parent_of: dict[str, str | None] = {}
        kids: dict[str, list[str]] = {}  # only targets with children
        # where each target is written: (parent id, index) or (None, index in `targets`);
        # its key path is rebuilt from these when a message needs it
        slots: dict[str, tuple[str | None, int]] = {}
        order: list[str] = []

        def path_of(tid: str) -> Path_:
            parent, index = slots[tid]
            if parent is None:
                return ("targets", index)
            return (*path_of(parent), "children", index)

        def walk(target: Target, path: Path_, parent: str | None, index: int, top: bool) -> None:
            if target.parent is not None and not top:
                self.error(
                    (*path, "parent"),
                    "parent 只能用于顶层对象 'parent' is only for top-level targets; nest children instead",
                )
            if target.id in nodes:
                first = self.doc.mark((*path_of(target.id), "id"))
                self.error(
                    (*path, "id"),
                    f"标识重复 duplicate target id '{target.id}'; first at {first.file}:{first.line}",
                )
                return
            nodes[target.id] = target
            parent_of[target.id] = parent
            slots[target.id] = (parent, index)
            order.append(target.id)
            for j, child in enumerate(target.children):
                walk(child, (*path, "children", j), target.id, j, False)
                kids.setdefault(target.id, []).append(child.id)

        for i, target in enumerate(self.config.targets):
            walk(target, ("targets", i), None, i, True)
        # attach top-level targets that name a parent (a township file under the county)
        for i, target in enumerate(self.config.targets):
            if target.parent is None or target.id not in nodes or nodes[target.id] is not target:
                continue
            if target.parent not in nodes:
                self.error(
                    ("targets", i, "parent"),
                    f"未知的上级对象 unknown parent target '{target.parent}'",
                    did_you_mean(target.parent, nodes),
                )
                continue
            if target.parent in self._subtree(kids, target.id):
                self.error(
                    ("targets", i, "parent"),
                    f"上级关系成环 parent '{target.parent}' is inside this target's own subtree",
                )
                continue
            parent_of[target.id] = target.parent
            kids.setdefault(target.parent, []).append(target.id)

        campaign_vars = dict(self.config.campaign.vars)
        no_parent = TargetNode("", "", frozenset(), None, None, (), (), vars=())
        built: dict[str, TargetNode] = {}
        vars_by_target: dict[str, dict[str, Any]] = {}
        shared_tags: dict[tuple[str, ...], frozenset[str]] = {}
        ancestries: dict[str, tuple[str, ...]] = {}

        def ancestry(parent: TargetNode) -> tuple[str, ...]:
            """The ancestors of a child of `parent` (one tuple shared by all its children)."""
            if not parent.id:
                return ()
            found = ancestries.get(parent.id)
            if found is None:
                found = ancestries[parent.id] = (*parent.ancestors, parent.id)
            return found

        for tid in self._tree_order(parent_of, kids, order):
            node = nodes[tid]
            parent_id = parent_of[tid]
            # parents come first in tree order: inherit from the parent's resolved node
            parent = built[parent_id] if parent_id is not None else no_parent
            inherited = vars_by_target[parent_id] if parent_id is not None else campaign_vars
            if node.vars:
                merged_vars = {**inherited, **node.vars}
                vars_tuple = tuple(sorted(merged_vars.items()))
            else:  # shared with the parent: nothing changes them
                merged_vars = inherited
                vars_tuple = (
                    parent.vars if parent_id is not None else tuple(sorted(merged_vars.items()))
                )
            vars_by_target[tid] = merged_vars
            tag_key = tuple(node.tags)
            tags = shared_tags.get(tag_key)
            if tags is None:
                tags = shared_tags[tag_key] = frozenset(tag_key)
            built[tid] = TargetNode(
                id=tid,
                name=node.name,
                tags=tags,
                audience=node.audience or parent.audience,
                parent=parent_id,
                ancestors=ancestry(parent),
                path=(*parent.path, node.name) if parent_id is not None else (node.name,),
                contacts=(
                    tuple(self._contacts(node, path_of(tid)))
                    if node.contacts or node.contacts_file or node.recipients
                    else ()
                ),
                address=(
                    tuple(sorted((c, AddressSpec.from_config(v)) for c, v in node.address.items()))
                    if node.address
                    else ()
                ),
                vars=vars_tuple,
                children=tuple(kids.get(tid, ())),
                screen=self._screen(node, path_of(tid), parent.path if parent_id else ()),
            )
        return TargetTree(built.values()), vars_by_target

    def _screen(self, node: Target, path: Path_, parent_path: tuple[str, ...]) -> ScreenSpec | None:
        """The target's screen, its channel resolved, its own content checked."""
        if node.screen is None:
            return None
        led = self.__dict__.get("_led_channels")
        if led is None:
            led = self.__dict__["_led_channels"] = [
                cid for cid, c in self.config.channels.items() if c.type == "led"
            ]
        channel = node.screen.channel
        if channel is None and len(led) == 1:
            channel = led[0]
        elif channel is None:
            self.error(
                (*path, "screen"),
                f"显示屏 screen '{node.id}': "
                + (
                    "没有 led 渠道 no channel of type 'led' serves it; add one under channels"
                    if not led
                    else f"须指明渠道 write channel: one of {', '.join(led)}"
                ),
            )
        elif channel not in led:
            self.error(
                (*path, "screen", "channel"),
                f"不是 led 渠道 expected a channel of type 'led' ({', '.join(led) or 'none'});"
                f" got '{channel}'",
                did_you_mean(channel, led),
            )
        spec = screen_spec(node, (*parent_path, node.name), channel or "")
        screen_problems(spec, path, self.error)
        return spec

    @staticmethod
    def _subtree(kids: dict[str, list[str]], tid: str) -> set[str]:
        out, stack = {tid}, [tid]
        while stack:
            for c in kids.get(stack.pop(), ()):
                out.add(c)
                stack.append(c)
        return out

    @staticmethod
    def _tree_order(
        parent_of: dict[str, str | None], kids: dict[str, list[str]], order: list[str]
    ) -> list[str]:
        out: list[str] = []
        stack = [t for t in reversed(order) if parent_of[t] is None]
        while stack:
            t = stack.pop()
            out.append(t)
            stack.extend(reversed(kids.get(t, ())))
        return out

    def _contacts(self, target: Target, path: Path_) -> list[Contact]:
        contacts: list[Contact] = []
        seen: set[str] = set()
        for j, raw in enumerate(target.contacts):
            number = parse_phone(raw)
            if number is None:
                self.error(
                    (*path, "contacts", j),
                    f"号码无效 not a mainland mobile or landline number: {mask_phone(str(raw))}",
                )
            elif number not in seen:
                seen.add(number)
                contacts.append(Contact(number, mask_phone(number)))
        if target.contacts_file:
            declared_in = Path(self.doc.mark((*path, "contacts_file")).file)
            base = (
                declared_in.parent
                if declared_in.is_absolute()
                else (self.base_dir / declared_in).parent
            )
            file = base / target.contacts_file
            self.contact_files.add(file)
            shown = self._shown(file)
            loaded, problems = self._contacts_file(file, shown)
            for problem in problems:
                self.issues.append(ConfigIssue(problem.file, problem.line, "", problem.message))
            if not loaded and not problems:
                self.warn(
                    (*path, "contacts_file"),
                    f"联系人文件为空 contacts file has no rows: {target.contacts_file}",
                )
            for c in loaded:
                if c.number not in seen:
                    seen.add(c.number)
                    contacts.append(c)
        if target.recipients is not None:
            for c in self._recipient_list(target, path):
                if c.number not in seen:
                    seen.add(c.number)
                    contacts.append(c)
        optouts = self._optouts()
        if optouts:
            contacts = [
                dataclasses.replace(c, optout=True) if c.number in optouts else c for c in contacts
            ]
        return contacts

    def _store_lists(self) -> tuple[dict[str, list[RecipientRow]], frozenset[str]]:
        """The store's lists and opt-outs, read once per build (thousands of targets ask)."""
        found: tuple[dict[str, list[RecipientRow]], frozenset[str]] | None = getattr(
            self, "_store_snapshot", None
        )
        if found is None:
            store = self.recipient_store
            if store is None:
                found = ({}, frozenset())
            else:
                self._store_seen()
                _, lists, optouts = store.snapshot()
                found = (lists, optouts)
            self._store_snapshot = found
        return found

    def _optouts(self) -> frozenset[str]:
        return self._store_lists()[1]

    def _store_seen(self) -> None:
        """Record the store in the manifest: a build is reused only while it is unchanged."""
        store = self.recipient_store
        if store is not None and store.path not in self.manifest.files:
            self.manifest.file(store.path, store.digest())
            if store.exists():
                self.contact_files.add(store.path)  # `run` reloads when a list is imported

    def _recipient_list(self, target: Target, path: Path_) -> list[Contact]:
        """The people of a target's recipient list (imported, or a file), filtered."""
        spec = target.recipients
        assert spec is not None
        rows: list[RecipientRow]
        if spec.list is not None:
            store = self.recipient_store
            rows_found = self._store_lists()[0].get(spec.list)
            if rows_found is None:
                known = [s.name for s in store.lists()] if store is not None else []
                self.error(
                    (*path, "recipients", "list"),
                    f"名单未导入 no recipient list '{spec.list}' in the recipient store:"
                    f" import it with `broadcaster recipients import FILE --list {spec.list}`",
                    did_you_mean(spec.list, known),
                )
                return []
            rows = rows_found
        else:
            assert spec.file is not None
            declared_in = Path(self.doc.mark((*path, "recipients", "file")).file)
            base = (
                declared_in.parent
                if declared_in.is_absolute()
                else (self.base_dir / declared_in).parent
            )
            file = base / spec.file
            self.contact_files.add(file)
            shown = self._shown(file)
            try:
                raw = file.read_bytes()
            except OSError as exc:
                self.manifest.file(file, None)
                self.error(
                    (*path, "recipients", "file"),
                    f"无法读取名单 cannot read recipient list {spec.file}: {exc.strerror}",
                )
                return []
            read = self.cache.recipient_list(file, raw, self.manifest)
            for problem in read.problems:
                self.issues.append(ConfigIssue(shown, problem.line, "", problem.reason))
            rows = read.rows
        wanted = ContactFilter(frozenset(spec.tags), tuple(spec.areas))
        return [c for c in contacts_of(rows) if not wanted or wanted.matches(c)]

    def _contacts_file(self, file: Path, shown: str) -> tuple[list[Contact], list[ContactProblem]]:
        try:
            raw = file.read_bytes()
        except OSError as exc:
            self.manifest.file(file, None)
            message = f"无法读取 cannot read contacts file: {exc.strerror}"
            return [], [ContactProblem(shown, None, message)]
        return self.cache.contacts(file, raw, shown, self.manifest)
