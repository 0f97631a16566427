"""Jinja2 rendering of the report templates, with the number formats both documents share."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2

from tasks.reporting.power import points

TEMPLATES = Path(__file__).parent / "templates"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "figure"


def number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def plus_minus(mean: float | None, std: float | None, digits: int = 4) -> str:
    if mean is None:
        return "n/a"
    return number(mean, digits) + ("" if std is None else f" ± {number(std, digits)}")


def interval(low: float | None, high: float | None, digits: int = 4) -> str:
    return "n/a (< 3 seeds)" if low is None else f"[{number(low, digits)}, {number(high, digits)}]"


def pvalue(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2g}"


def in_points(value: float | None) -> str:
    return "n/a" if value is None else f"{points(value)} pts"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    minutes, secs = divmod(float(seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    return (f"{hours} h " if hours else "") + (f"{minutes} min " if hours or minutes else "") + f"{secs:.1f} s"


def ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}×"


def markdown_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def fence(text: str) -> str:
    """A backtick fence longer than any run of backticks inside `text`, so the block cannot end early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def render(template: str, context: dict[str, Any]) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters.update(
        num=number,
        pm=plus_minus,
        ci=interval,
        pval=pvalue,
        pts=in_points,
        duration=duration,
        ratio=ratio,
        md=markdown_cell,
        fence=fence,
    )
    return environment.get_template(template).render(**context)
