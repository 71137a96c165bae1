"""Render every template a rule can pick, once per kind of target, at load time: syntax errors
and undefined variables surface in `validate`, not at send time (every undefined variable a
template uses, each with its file and line, not only the first). The rendered variants are
kept on the campaign, so the engine can run each channel's own checks (length budgets,
billing length, charset, keywords) over exactly these texts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from broadcaster.errors import ConfigIssue, TemplateError
from broadcaster.model.campaign import Campaign, ChannelSpec, RuleSpec, Variant
from broadcaster.model.context import message_context
from broadcaster.model.render import RENDER_FAILED, UNDEFINED

__all__ = ["RenderChecks"]


class RenderChecks:
    """Mixed into the config builder: needs `config`, `issues` and `_shown`."""

    config: Any
    issues: list[ConfigIssue]
    _template_files: dict[str, str]

    def _shown(self, p: Path) -> str:  # provided by the builder
        raise NotImplementedError

    def _render_checks(self, campaign: Campaign, today: dt.date) -> None:
        from broadcaster.model.plan import Occurrence, Planner

        planner = Planner(campaign)
        self._template_files = {}
        config = self.config
        reported: set[tuple[str, str]] = set()
        groups_by_targets: dict[tuple[str, ...], dict[tuple[Any, ...], tuple[int, str]]] = {}
        for spec in campaign.rules:
            rule = spec.rule
            if not rule.enabled:
                continue
            combos: list[tuple[str | None, str | None]] = []
            if rule.template or rule.theme:
                combos.append((rule.theme, None))
            else:
                combos.append((config.default_theme, None))
                combos += [(p.theme, None) for p in config.phases if p.theme]
                combos += [(o.theme, o.id) for o in config.occasions]
            groups = groups_by_targets.get(spec.targets)
            if groups is None:  # rules with the same targets check the same representatives
                groups = groups_by_targets[spec.targets] = {}
                for tid in spec.targets:
                    key, weight = self._kind(campaign, tid)
                    best = groups.get(key)
                    if best is None or weight > best[0]:
                        groups[key] = (weight, tid)
            at = dt.datetime.combine(today, Planner.times(rule.when)[-1], tzinfo=campaign.tz)
            occurrence = Occurrence(rule.id, at, 0, today)
            for cid in rule.channels:
                channel = campaign.channels[cid]
                for theme, occasion in combos:
                    names = (
                        [rule.template]
                        if rule.template
                        else list(rule.topics or config.themes[theme].topics)
                    )
                    for name in names:
                        for _, tid in groups.values():
                            node = campaign.targets[tid]
                            if occasion is not None and not planner.themes.applies(
                                campaign.occasion(occasion), node
                            ):
                                continue
                            template = campaign.renderer.template_name(
                                channel.kind, name, node.audience
                            )
                            if template is None:
                                continue
                            self._check_one(
                                planner,
                                channel,
                                template,
                                occurrence,
                                tid,
                                theme,
                                occasion,
                                None if rule.template else name,
                                spec,
                                reported,
                            )

    @staticmethod
    def _kind(campaign: Campaign, tid: str) -> tuple[tuple[Any, ...], int]:
        """Targets alike for rendering (audience, variable names), and how long their texts
        may grow (the longest of a kind is the one checked)."""
        node = campaign.targets[tid]
        key = (node.audience, tuple(k for k, _ in node.vars))
        return key, len(node.name) + sum(len(str(v)) for _, v in node.vars)

    def _check_one(
        self,
        planner: Any,
        channel: ChannelSpec,
        template: str,
        occurrence: Any,
        tid: str,
        theme: str | None,
        occasion: str | None,
        topic: str | None,
        spec: RuleSpec,
        reported: set[tuple[str, str]],
    ) -> None:
        renderer = planner.campaign.renderer
        try:
            text, params = planner.text_and_params(
                template, occurrence, channel.id, tid, theme, occasion, topic
            )
        except TemplateError as exc:
            where, _, message = str(exc).partition(": ")
            file, _, line = where.rpartition(":")
            found = [(file, line, message)]
            if UNDEFINED in message:  # the render stopped at the first: find every one
                context = message_context(
                    planner.campaign, occurrence, channel.id, tid, theme, occasion, topic
                )
                uses = renderer.undefined_uses(template, context)
                found = [(f, str(n), f"{RENDER_FAILED}: {UNDEFINED}: {m}") for f, n, m in uses]
                found = found or [(file, line, message)]
            for file, line, message in found:
                key = (template, f"{file}:{line}: {message}")
                if key in reported:
                    continue
                reported.add(key)
                self.issues.append(
                    ConfigIssue(
                        self._shown(Path(file)),
                        int(line) if line.isdigit() else None,
                        "",
                        f"{message} (rule '{spec.id}', channel '{channel.id}')",
                    )
                )
            return
        shown = self._template_files.get(template)
        if shown is None:
            shown = self._template_files[template] = self._shown(Path(renderer.source(template)[1]))
        planner.campaign.variants.append(
            Variant(
                spec.id,
                channel.id,
                tid,
                template,
                shown,
                renderer.sha(template),
                theme,
                topic,
                text,
                params,
            )
        )
