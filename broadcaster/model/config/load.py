"""Load a campaign: parse, validate the schema, cross-check every reference, render-test templates.

All problems are collected and raised together as one `ConfigError`; a config with
any error is refused whole, never half-applied.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from broadcaster.errors import CalendarError, ConfigError, ConfigIssue, TemplateError
from broadcaster.model.calendar import SOLAR_TERMS, ChinaCalendar
from broadcaster.model.campaign import Campaign, ChannelSpec, RuleSpec
from broadcaster.model.config.cache import ConfigCache, Manifest, forget_parsed
from broadcaster.model.config.explain import did_you_mean, explain
from broadcaster.model.config.led_checks import variant_problems
from broadcaster.model.config.render_checks import RenderChecks
from broadcaster.model.config.schema import Config, Selector
from broadcaster.model.config.source import Document, Path_, load_document
from broadcaster.model.config.target_checks import TargetChecks
from broadcaster.model.render import Renderer
from broadcaster.model.targets import TargetTree, contact_filter, reachable
from broadcaster.recipients.store import RecipientStore
from broadcaster.vocab import Addressing, MessageKind, QuietHours, RateLimit

__all__ = [
    "HOLIDAY_NAMES",
    "build_campaign",
    "forget_loaded",
    "load_campaign",
]

HOLIDAY_NAMES = ("元旦", "春节", "清明节", "劳动节", "端午节", "中秋节", "国庆节")


def load_campaign(
    path: Path | str,
    *,
    today: dt.date,
    cache_dir: Path | None = None,
    recipients: RecipientStore | None = None,
) -> Campaign:
    """Load and check `path` (and its includes). Raises ConfigError listing every problem.

    `today` is the date the calendar's freshness is judged on; nothing reads a clock.
    `cache_dir` keeps parsed files between processes (see `build_campaign`); `recipients`
    is the office's recipient store, for targets naming an imported list.
    """
    campaign, issues = build_campaign(path, today=today, cache_dir=cache_dir, recipients=recipients)
    if campaign is None or any(i.severity == "error" for i in issues):
        raise ConfigError(issues)
    return campaign


@dataclass
class _Built:
    today: dt.date
    manifest: Manifest
    campaign: Campaign | None
    issues: list[ConfigIssue]

    def result(self) -> tuple[Campaign | None, list[ConfigIssue]]:
        """A copy the caller may change (its lists), sharing the built parts."""
        campaign = self.campaign
        if campaign is not None:
            campaign = dataclasses.replace(
                campaign,
                channels=dict(campaign.channels),
                rules=list(campaign.rules),
                warnings=list(campaign.warnings),
                calendar_warnings=list(campaign.calendar_warnings),
                variants=list(campaign.variants),
                contact_files=set(campaign.contact_files),
            )
        return campaign, list(self.issues)


_BUILT_CAMPAIGNS = 8  # campaigns (by main file) whose latest build is kept in memory
_built: OrderedDict[tuple[Path, Path | None], _Built] = OrderedDict()
_built_lock = threading.Lock()


def forget_loaded() -> None:
    """Drop every build and parsed file kept in memory (a cache folder on disk stays)."""
    with _built_lock:
        _built.clear()
    forget_parsed()


def build_campaign(
    path: Path | str,
    *,
    today: dt.date,
    cache_dir: Path | None = None,
    recipients: RecipientStore | None = None,
) -> tuple[Campaign | None, list[ConfigIssue]]:
    """The campaign and every issue found; None when the file or its schema is invalid.

    The engine adds its channel checks to these issues before deciding, so a config is
    refused with every problem at once.

    Loading what was loaded before is fast: a build is reused while every file it read
    (YAML, contact lists, templates, holiday files) has the same content, and each file
    is parsed once per content. `cache_dir` keeps the parsed files on disk too, for the
    next process.
    """
    root = Path(path).resolve()
    slot = (root, recipients.path.resolve() if recipients is not None else None)
    with _built_lock:
        built = _built.get(slot)
    if built is not None and built.today == today and built.manifest.unchanged():
        return built.result()
    manifest = Manifest()
    cache = ConfigCache(cache_dir)
    campaign, issues = _build(root, today, cache, manifest, recipients)
    built = _Built(today, manifest, campaign, issues)
    with _built_lock:
        _built[slot] = built
        _built.move_to_end(slot)
        while len(_built) > _BUILT_CAMPAIGNS:
            _built.popitem(last=False)
    return built.result()


def _build(
    root: Path,
    today: dt.date,
    cache: ConfigCache,
    manifest: Manifest,
    recipients: RecipientStore | None = None,
) -> tuple[Campaign | None, list[ConfigIssue]]:
    doc, issues = load_document(root, cache=cache, manifest=manifest)
    if any(i.severity == "error" for i in issues):
        return None, issues
    try:
        config = Config.model_validate(doc.data)
    except ValidationError as exc:
        return None, explain(exc, doc, Config)
    builder = _Builder(doc, config, cache, manifest, recipients)
    campaign = builder.build(today)
    return campaign, issues + builder.issues


class _Builder(TargetChecks, RenderChecks):
    def __init__(
        self,
        doc: Document,
        config: Config,
        cache: ConfigCache,
        manifest: Manifest,
        recipients: RecipientStore | None = None,
    ):
        self.recipient_store = recipients
        self.doc = doc
        self.config = config
        self.cache = cache
        self.manifest = manifest
        self.base_dir = (doc.root or Path.cwd()).parent
        self.issues: list[ConfigIssue] = []
        self.calendar_warnings: list[tuple[str, bool]] = []
        self.contact_files: set[Path] = set()

    def error(self, path: Path_, message: str, hint: str | None = None) -> None:
        self.issues.append(self.doc.issue(path, message, hint=hint))

    def warn(self, path: Path_, message: str) -> None:
        self.issues.append(self.doc.issue(path, message, severity="warning"))

    # -- the whole build

    def build(self, today: dt.date) -> Campaign:
        config = self.config
        tz = ZoneInfo(config.campaign.timezone)
        calendar = self._calendar(today)
        renderer = Renderer(self._template_dirs())
        try:
            topics = renderer.topics
        except TemplateError as exc:
            where, _, message = str(exc).partition(": ")
            file, _, line = where.rpartition(":")
            if not line.isdigit():
                file, line = where, ""
            self.issues.append(
                ConfigIssue(self._shown(Path(file)), int(line) if line else None, "", message)
            )
            topics = {}
        self._unique_ids()
        tree, vars_by_target = self._targets()
        channels = self._channels()
        self._themes(topics)
        rules = self._rules(tree, channels, topics, renderer)
        self._duties(tree, channels)
        campaign = Campaign(
            path=self.doc.root or Path("schedules.yaml"),
            config=config,
            doc=self.doc,
            tz=tz,
            calendar=calendar,
            targets=tree,
            channels=channels,
            rules=rules,
            renderer=renderer,
            vars_by_target=vars_by_target,
        )
        if not any(i.severity == "error" for i in self.issues):
            self._render_checks(campaign, today)
            self._screen_texts(campaign)
        campaign.warnings = [i for i in self.issues if i.severity != "error"]
        campaign.calendar_warnings = self.calendar_warnings
        campaign.contact_files = self.contact_files
        return campaign

    # -- sections

    def _calendar(self, today: dt.date) -> ChinaCalendar:
        folder = self.base_dir / self.config.calendar.overrides
        self.manifest.folder(folder, "*.yaml")
        try:
            calendar = ChinaCalendar.load(folder)
        except CalendarError as exc:
            self.issues.append(ConfigIssue(str(folder), None, "", str(exc)))
            calendar = ChinaCalendar.load(None)
        years: set[int] = set()
        for phase in self.config.phases:
            last = (phase.end or dt.date(today.year + 1, 12, 31)).year
            years |= set(range(phase.start.year, last + 1))
        self.calendar_warnings = calendar.freshness_warnings(today, years, self._shown(folder))
        for message, _ in self.calendar_warnings:
            self.warn(("calendar", "overrides"), message)
        return calendar

    def _shown(self, p: Path) -> str:
        try:
            return str(p.resolve().relative_to(self.base_dir.resolve()))
        except ValueError:
            return str(p)

    def _template_dirs(self) -> list[Path]:
        dirs = []
        for i, folder in enumerate(self.config.templates):
            p = Path(self.doc.mark(("templates", i)).file)
            base = (self.base_dir / p).parent if not p.is_absolute() else p.parent
            path = (base / folder).resolve()
            self.manifest.folder(path)
            if not path.is_dir():
                self.error(("templates", i), f"模板目录不存在 template folder not found: {folder}")
                continue
            dirs.append(path)
        return dirs

    def _unique_ids(self) -> None:
        for section in ("phases", "occasions", "rules", "duties"):
            seen: dict[str, int] = {}
            for i, item in enumerate(getattr(self.config, section)):
                if item.id in seen:
                    first = self.doc.mark((section, seen[item.id], "id"))
                    self.error(
                        (section, i, "id"),
                        f"标识重复 duplicate id '{item.id}'; first at {first.file}:{first.line}",
                    )
                else:
                    seen[item.id] = i

    def _channels(self) -> dict[str, ChannelSpec]:
        """Channel instances as configured; the engine resolves them against their plugins."""
        out: dict[str, ChannelSpec] = {}
        for cid, inst in self.config.channels.items():
            default = Addressing.CONTACTS if inst.kind is MessageKind.SMS else Addressing.TARGET
            out[cid] = ChannelSpec(
                cid,
                inst.type,
                inst.kind,
                inst.name,
                inst.addressing or default,
                inst.enabled,
                QuietHours.parse(inst.quiet_hours) if inst.quiet_hours else None,
                inst.max_length,
                RateLimit.parse(inst.rate_limit) if inst.rate_limit else None,
                inst.concurrency,
                inst.settings,
            )
        return out

    def _themes(self, topics: Mapping[str, Any]) -> None:
        config = self.config
        for tid, theme in config.themes.items():
            for j, topic in enumerate(theme.topics):
                if topics and topic not in topics:
                    self.error(
                        ("themes", tid, "topics", j),
                        f"未知的诈骗类型 unknown topic '{topic}'",
                        did_you_mean(topic, topics),
                    )
            if len(set(theme.topics)) < 2:
                self.warn(
                    ("themes", tid, "topics"),
                    "只有一种诈骗类型 only one topic: every push in this theme carries the same message",
                )
        themes = list(config.themes)
        if config.default_theme not in config.themes:
            self.error(
                ("default_theme",),
                f"未知的主题 unknown theme '{config.default_theme}'; expected one of {', '.join(themes)}",
                did_you_mean(config.default_theme, themes),
            )
        for i, phase in enumerate(config.phases):
            if phase.theme and phase.theme not in config.themes:
                self.error(
                    ("phases", i, "theme"),
                    f"未知的主题 unknown theme '{phase.theme}'",
                    did_you_mean(phase.theme, themes),
                )
        for i, occ in enumerate(config.occasions):
            if occ.theme not in config.themes:
                self.error(
                    ("occasions", i, "theme"),
                    f"未知的主题 unknown theme '{occ.theme}'",
                    did_you_mean(occ.theme, themes),
                )
            if occ.holiday is not None and occ.holiday not in HOLIDAY_NAMES:
                self.error(
                    ("occasions", i, "holiday"),
                    f"未知的法定节假日 unknown official holiday; expected one of {', '.join(HOLIDAY_NAMES)}; got '{occ.holiday}'",
                    did_you_mean(occ.holiday, HOLIDAY_NAMES),
                )
            if occ.solar_term is not None and occ.solar_term not in SOLAR_TERMS:
                self.error(
                    ("occasions", i, "solar_term"),
                    f"未知的节气 unknown solar term '{occ.solar_term}'",
                    did_you_mean(occ.solar_term, SOLAR_TERMS),
                )

    def _select(self, tree: TargetTree, selector: Selector, path: Path_) -> tuple[str, ...]:
        ok = True
        for key in ("tags", "all_tags"):
            for j, tag in enumerate(getattr(selector, key)):
                if tag not in tree.tags:
                    ok = False
                    self.error(
                        (*path, key, j),
                        f"没有对象带此标签 no target has tag '{tag}'",
                        did_you_mean(tag, tree.tags),
                    )
        for j, aud in enumerate(selector.audiences):
            if aud not in tree.audiences:
                ok = False
                self.error(
                    (*path, "audiences", j),
                    f"没有对象属于此受众 no target has audience '{aud}'",
                    did_you_mean(aud, tree.audiences),
                )
        for key in ("under", "ids", "exclude"):
            for j, tid in enumerate(getattr(selector, key)):
                if tid not in tree:
                    ok = False
                    self.error(
                        (*path, key, j),
                        f"未知的对象 unknown target '{tid}'",
                        did_you_mean(tid, tree.nodes),
                    )
        chosen = tree.select(**selector.model_dump())
        if ok and not chosen:
            self.error(path, "选择不到任何对象 selects no target")
        return chosen

    def _rules(
        self,
        tree: TargetTree,
        channels: dict[str, ChannelSpec],
        topics: Mapping[str, Any],
        renderer: Renderer,
    ) -> list[RuleSpec]:
        config = self.config
        phase_ids = [p.id for p in config.phases]
        out: list[RuleSpec] = []
        for i, rule in enumerate(config.rules):
            path: Path_ = ("rules", i)
            targets = self._select(tree, rule.targets, (*path, "targets"))
            for j, cid in enumerate(rule.channels):
                if cid not in config.channels:
                    self.error(
                        (*path, "channels", j),
                        f"未知的渠道 unknown channel '{cid}'; expected one of {', '.join(config.channels)}",
                        did_you_mean(cid, config.channels),
                    )
            for j, pid in enumerate(rule.phases or []):
                if pid not in phase_ids:
                    self.error(
                        (*path, "phases", j),
                        f"未知的阶段 unknown phase '{pid}'; expected one of {', '.join(phase_ids)}",
                        did_you_mean(pid, phase_ids),
                    )
            if rule.theme is not None and rule.theme not in config.themes:
                self.error(
                    (*path, "theme"),
                    f"未知的主题 unknown theme '{rule.theme}'",
                    did_you_mean(rule.theme, config.themes),
                )
            for j, topic in enumerate(rule.topics or []):
                if topics and topic not in topics:
                    self.error(
                        (*path, "topics", j),
                        f"未知的诈骗类型 unknown topic '{topic}'",
                        did_you_mean(topic, topics),
                    )
            for cid in rule.channels:
                spec = channels.get(cid)
                if spec is None:
                    continue
                if spec.addressing is Addressing.CONTACTS:
                    only = contact_filter(rule)
                    mobile_only = spec.kind is MessageKind.SMS
                    empty = [
                        t
                        for t in targets
                        if not reachable(tree[t].contacts, mobile_only=mobile_only, only=only)
                    ]
                    if empty and only is not None:
                        self.error(
                            (*path, "recipients"),
                            f"名单中没有符合条件的人 channel '{cid}': no one on the lists of"
                            f" {', '.join(empty[:5])} matches this filter"
                            + (" (SMS reaches mobiles only)" if mobile_only else ""),
                        )
                    elif empty:
                        landlines = any(tree[t].contacts for t in empty)
                        self.error(
                            (*path, "targets"),
                            f"对象没有联系人 channel '{cid}' sends to people, but these targets have no contacts: {', '.join(empty[:5])}"
                            + (" (only landlines: SMS reaches mobiles only)" if landlines else ""),
                        )
                self._template_presence(
                    renderer,
                    spec,
                    rule.template,
                    self._rule_topics(rule),
                    [tree[t].audience for t in targets],
                    (*path, "template" if rule.template else "channels"),
                )
            if rule.relay is not None:
                self._relay(tree, channels, rule, targets, path, renderer)
            out.append(RuleSpec(i, rule, targets))
        return out

    def _relay(
        self,
        tree: TargetTree,
        channels: dict[str, ChannelSpec],
        rule: Any,
        targets: tuple[str, ...],
        path: Path_,
        renderer: Renderer,
    ) -> None:
        """A relay's channel and levels exist, and every level finds targets below the one
        above (checked against the tree: a level no target carries is a typo)."""
        from broadcaster.model.relay import plan_hops

        relay = rule.relay
        where: Path_ = (*path, "relay")
        ok = True
        if relay.via not in self.config.channels:
            ok = False
            self.error(
                (*where, "via"),
                f"未知的渠道 unknown channel '{relay.via}'; expected one of"
                f" {', '.join(self.config.channels)}",
                did_you_mean(relay.via, self.config.channels),
            )
        for k, level in enumerate(relay.levels):
            if level.to not in tree.tags:
                ok = False
                self.error(
                    (*where, "levels", k, "to"),
                    f"未知的层级 unknown level '{level.to}': a level is a tag some targets carry,"
                    f" e.g. {', '.join(sorted(tree.tags)[:6])}",
                    did_you_mean(level.to, tree.tags),
                )
        if not ok or not targets:
            return
        found: dict[int, set[str]] = {}
        for root in targets:
            for hop in plan_hops(tree, root, relay)[1]:
                found.setdefault(hop.level, set()).add(hop.target_id)
        for k, level in enumerate(relay.levels):
            if not found.get(k + 1):
                above = "the rule's targets" if k == 0 else f"level '{relay.levels[k - 1].to}'"
                self.error(
                    (*where, "levels", k, "to"),
                    f"层级下没有对象 no target tagged '{level.to}' below {above}",
                )
                return
        spec = channels.get(relay.via)
        if spec is not None:
            every = set().union(*found.values())
            self._template_presence(
                renderer,
                spec,
                rule.template,
                self._rule_topics(rule),
                [tree[t].audience for t in every],
                (*where, "via"),
            )

    def _rule_topics(self, rule: Any) -> list[str]:
        config = self.config
        if rule.template:
            return []
        if rule.topics:
            return list(rule.topics)
        themes = (
            [rule.theme]
            if rule.theme
            else [
                config.default_theme,
                *(p.theme for p in config.phases if p.theme),
                *(o.theme for o in config.occasions),
            ]
        )
        seen: dict[str, None] = {}
        for theme in themes:
            if theme in config.themes:
                for topic in config.themes[theme].topics:
                    seen[topic] = None
        return list(seen)

    def _screen_texts(self, campaign: Campaign) -> None:
        """Every text a rule sends to a screen, in the screen's charset and width."""
        screens = campaign.screens
        if not screens:
            return
        reported: set[tuple[str, str, str]] = set()
        for variant in campaign.variants:
            if campaign.channels[variant.channel_id].kind is not MessageKind.LED:
                continue
            for tid in campaign.rule(variant.rule_id).targets:
                spec = screens.get(tid)
                if spec is None:
                    continue
                for problem in variant_problems(
                    spec, variant.template_file, variant.template, variant.text
                ):
                    key = (tid, variant.template, problem)
                    if key not in reported:
                        reported.add(key)
                        self.issues.append(
                            ConfigIssue(
                                variant.template_file,
                                1,
                                "",
                                f"{problem} (rule '{variant.rule_id}')",
                            )
                        )

    def _template_presence(
        self,
        renderer: Renderer,
        spec: ChannelSpec,
        template: str | None,
        topics: Iterable[str],
        audiences: Iterable[str | None],
        path: Path_,
    ) -> None:
        names = [template] if template else list(topics)
        missing = []
        for name in names:
            for audience in set(audiences):
                if renderer.template_name(spec.kind, name, audience) is None:
                    missing.append(f"{spec.kind.value}/{name}.j2")
                    break
        if missing:
            self.error(
                path,
                f"缺少模板 no template for channel '{spec.id}': {', '.join(sorted(set(missing)))}",
            )

    def _duties(self, tree: TargetTree, channels: dict[str, ChannelSpec]) -> None:
        phase_ids = [p.id for p in self.config.phases]
        for i, duty in enumerate(self.config.duties):
            path: Path_ = ("duties", i)
            self._select(tree, duty.targets, (*path, "targets"))
            for j, cid in enumerate(duty.channels or []):
                if cid not in self.config.channels:
                    self.error(
                        (*path, "channels", j),
                        f"未知的渠道 unknown channel '{cid}'",
                        did_you_mean(cid, self.config.channels),
                    )
            for j, pid in enumerate(duty.phases or []):
                if pid not in phase_ids:
                    self.error(
                        (*path, "phases", j),
                        f"未知的阶段 unknown phase '{pid}'",
                        did_you_mean(pid, phase_ids),
                    )
