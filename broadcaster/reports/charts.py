"""Charts as inline SVG for the HTML report (renders offline: no script, no font download)
and as PNG through matplotlib (Agg) with the Noto CJK font Debian's fonts-noto-cjk installs."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path

__all__ = ["PALETTE", "coverage_svg", "grouped_bars_svg", "png_charts"]

PALETTE = ["#2f6fb0", "#e07b39", "#3a9a5b", "#c0392b", "#8e6cbf", "#7f8c8d", "#d4a017", "#1abc9c"]
FONT = "Noto Sans CJK SC, Noto Sans SC, Microsoft YaHei, sans-serif"
CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
)


def grouped_bars_svg(
    title: str, columns: Sequence[str], series: dict[str, list[int]], *, chart_id: str
) -> str:
    """Vertical bars: one group per column (week or day), one bar per series (channel)."""
    names = sorted(series)
    legend_rows = max(1, (len(names) + 3) // 4)
    width, left, top = 760, 56, 36
    bottom = 44 + 16 * legend_rows
    height = 256 + bottom
    largest = max([1, *(v for values in series.values() for v in values)])
    step = -(-largest // 4)  # whole-number ticks: the axis ends at 4 x step >= largest
    top_value = step * 4
    plot_w, plot_h = width - left - 16, height - top - bottom
    group_w = plot_w / max(1, len(columns))
    bar_w = max(2.0, group_w * 0.8 / max(1, len(names)))  # a fifth of each group is the gap
    parts = [
        f'<svg id="{chart_id}" class="chart" role="img"'
        f' width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        f' font-family="{FONT}" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="18" font-size="14" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 16}" y2="{top + plot_h}" stroke="#333"/>',
    ]
    for tick in range(5):
        value = step * tick
        y = top + plot_h - plot_h * tick / 4
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value:,.0f}</text>'
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 16}" y2="{y:.1f}" stroke="#ddd"/>'
        )
    for i, column in enumerate(columns):
        x0 = left + i * group_w + group_w * 0.1
        for j, name in enumerate(names):
            value = series[name][i]
            h = plot_h * value / top_value
            parts.append(
                f'<rect class="bar" x="{x0 + j * bar_w:.1f}" y="{top + plot_h - h:.1f}"'
                f' width="{bar_w - 1:.1f}" height="{max(h, 0.5):.1f}" fill="{PALETTE[j % len(PALETTE)]}">'
                f"<title>{escape(name)} · {escape(column)}: {value:,}</title></rect>"
            )
        parts.append(
            f'<text x="{left + i * group_w + group_w / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
            f"{escape(column)}</text>"
        )
    for j, name in enumerate(names):  # legend, below the column labels
        x = left + (j % 4) * 180
        y = top + plot_h + 40 + (j // 4) * 16
        parts.append(
            f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{PALETTE[j % len(PALETTE)]}"/>'
            f'<text x="{x + 14}" y="{y}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def coverage_svg(title: str, rows: Sequence[tuple[str, int, int]], *, chart_id: str) -> str:
    """Horizontal bars: the share of deliveries reached per township (reached / deliveries)."""
    width, left, row_h, top = 760, 220, 24, 36
    height = top + row_h * max(1, len(rows)) + 24
    plot_w = width - left - 90
    parts = [
        f'<svg id="{chart_id}" class="chart" role="img"'
        f' width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        f' font-family="{FONT}" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<text x="8" y="18" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for i, (name, reached, total) in enumerate(rows):
        share = reached / total if total else 0.0
        y = top + i * row_h
        parts.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{escape(name)}</text>'
            f'<rect x="{left}" y="{y + 3}" width="{plot_w}" height="{row_h - 8}" fill="#eee"/>'
            f'<rect class="bar" x="{left}" y="{y + 3}" width="{max(plot_w * share, 0.5):.1f}"'
            f' height="{row_h - 8}" fill="{PALETTE[2]}"><title>{escape(name)}: {reached:,}/{total:,}'
            f"</title></rect>"
            f'<text x="{left + plot_w + 6}" y="{y + 15}">{share:.1%} ({reached:,}/{total:,})</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _cjk_font() -> str | None:
    for path in CJK_FONTS:
        if Path(path).exists():
            return path
    return None


def png_charts(
    folder: Path,
    *,
    weekly_title: str,
    columns: Sequence[str],
    series: dict[str, list[int]],
    coverage_title: str,
    coverage: Sequence[tuple[str, int, int]],
) -> list[Path]:
    """Two PNG charts (deliveries per column per channel; coverage by township) for a
    Word report; raises RuntimeError when matplotlib or the CJK font is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import font_manager
        from matplotlib import pyplot as plt
    except ImportError:
        raise RuntimeError(
            "PNG 图表需要 matplotlib PNG charts need matplotlib: pip install 'broadcaster[reports]'"
        ) from None
    font_path = _cjk_font()
    if font_path is None:
        raise RuntimeError(
            "缺少中文字体 no CJK font: apt-get install fonts-noto-cjk (scripts/bootstrap.sh does it)"
        )
    font_manager.fontManager.addfont(font_path)
    family = font_manager.FontProperties(fname=font_path).get_name()
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    with plt.rc_context({"font.family": family, "axes.unicode_minus": False}):
        fig, ax = plt.subplots(figsize=(9, 4.2), dpi=120)
        names = sorted(series)
        width = 0.8 / max(1, len(names))
        for j, name in enumerate(names):
            xs = [i + j * width for i in range(len(columns))]
            ax.bar(xs, series[name], width=width, label=name, color=PALETTE[j % len(PALETTE)])
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(columns))], list(columns), fontsize=8)
        ax.set_title(weekly_title)
        if names:
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / "chart_per_period.png"
        fig.savefig(path)
        plt.close(fig)
        out.append(path)

        fig, ax = plt.subplots(figsize=(9, 0.5 * max(2, len(coverage)) + 1.2), dpi=120)
        labels = [name for name, _, _ in coverage]
        shares = [100 * r / t if t else 0.0 for _, r, t in coverage]
        ax.barh(labels, shares, color=PALETTE[2])
        ax.set_xlim(0, 100)
        ax.set_xlabel("触达率 % reached")
        ax.set_title(coverage_title)
        ax.invert_yaxis()
        fig.tight_layout()
        path = folder / "chart_coverage.png"
        fig.savefig(path)
        plt.close(fig)
        out.append(path)
    return out
