"""Render every template a rule can pick, once per kind of target, at load time: syntax errors
and undefined variables surface in `validate`, not at send time. The rendered variants are
kept on the campaign, so the engine can run each channel's own checks (length budgets,
billing length, charset, keywords) over exactly these texts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from broadcaster.errors import ConfigIssue, TemplateError
from broadcaster.model.campaign import Campaign, ChannelSpec, RuleSpec, Variant

__all__ = ["RenderChecks"]


class RenderChecks:
    """Mixed into the config builder: needs `config`, `issues` and `_shown`."""

    config: Any
    issues: list[ConfigIssue]

    def _shown(self, p: Path) -> str:  # provided by the builder
        raise NotImplementedError

    def _render_checks(self, campaign: Campaign, today: dt.date) -> None:
        from broadcaster.model.plan import Occurrence, Planner

        planner = Planner(campaign)
        config = self.config
        reported: set[tuple[str, str]] = set()
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
            groups: dict[tuple[Any, ...], str] = {}
            for tid in spec.targets:
                node = campaign.targets[tid]
                key = (node.audience, tuple(sorted(k for k, _ in node.vars)))
                best = groups.get(key)
                weight = len(node.name) + sum(len(str(v)) for _, v in node.vars)
                if best is None or weight > self._weight(campaign, best):
                    groups[key] = tid
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
                        for tid in groups.values():
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
    def _weight(campaign: Campaign, tid: str) -> int:
        node = campaign.targets[tid]
        return len(node.name) + sum(len(str(v)) for _, v in node.vars)

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
            key = (template, message)
            if key not in reported:
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
        _, file = renderer.source(template)
        planner.campaign.variants.append(
            Variant(
                spec.id,
                channel.id,
                tid,
                template,
                self._shown(Path(file)),
                renderer.sha(template),
                theme,
                topic,
                text,
                params,
            )
        )
