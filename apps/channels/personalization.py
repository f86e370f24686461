"""Personalization in Liquid (python-liquid), a language made for untrusted authors, with its
resource limits on. Templates see a plain dict of primitives:

    profile / record   the recipient's record (profile when the dimension is `profile`)
    row                the extra columns of the population (enrichment, segment code, file data)
    vars               the run's event variables
    campaign, message  the campaign's name; the message's links (unsubscribe, ...)

HTML parts are rendered with autoescaping, so a value such as `<script>` in a profile arrives as
text. Values are never parsed as templates: a profile whose name is `{{ 7 * 7 }}` is greeted as
such. `check_template` validates at publish: syntax errors with their line, unknown filters,
unknown names (fields not in the schema, variables not declared)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from liquid import Environment, Template
from liquid.exceptions import LiquidError

ROOTS = ("profile", "record", "row", "vars", "campaign", "message")


class LimitedEnvironment(Environment):
    context_depth_limit = 20
    loop_iteration_limit = 10_000
    local_namespace_limit = 100_000     # bytes held by assign / capture
    output_stream_limit = 500_000       # characters of output
    block_nesting_limit = 30


TEXT_ENV = LimitedEnvironment()
HTML_ENV = LimitedEnvironment(autoescape=True)


class RenderError(Exception):
    """A template could not be rendered for one recipient (a limit was hit, a filter failed)."""


@dataclass
class TemplateProblem:
    path: str
    message: str
    line: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "message": self.message}


def _line(source: str, index: int | None) -> int:
    if index is None or index < 0:
        return source.count("\n") + 1  # "found end of template": the problem is at the end
    return source.count("\n", 0, index) + 1


def _first_line(message: str) -> str:
    return str(message).split("\n", 1)[0].strip()


MARKUP = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)


def _error_line(source: str, exc: LiquidError, env: Environment) -> int:
    """The line of a syntax error. Liquid knows it for most errors; for one found at the end of
    an expression or of the template, find the markup that fails alone, or the opening tag of
    the block left unclosed."""
    index = getattr(getattr(exc, "token", None), "start_index", -1)
    if index is not None and index >= 0:
        return _line(source, index)
    unclosed = re.search(r"expected tag end(\w+)", str(exc.message))
    if unclosed:
        opening = list(re.finditer(r"\{%-?\s*" + re.escape(unclosed.group(1)) + r"\b", source))
        if opening:
            return _line(source, opening[-1].start())
    for markup in MARKUP.finditer(source):
        try:
            env.from_string(markup.group())
        except LiquidError as alone:
            if not re.match(r"expected tag end", str(alone.message)):
                return _line(source, markup.start())
    return _line(source, None)


@functools.lru_cache(maxsize=512)
def compile_template(source: str, *, html: bool = False) -> Template:
    """Parse `source` (cached: a delivery renders the same few templates thousands of times)."""
    return (HTML_ENV if html else TEXT_ENV).from_string(source)


def check_template(source: str, *, path: str, html: bool = False, fields: set[str] | None = None,
                   variables: set[str] | None = None, row_columns: set[str] | None = None) -> list[TemplateProblem]:
    """What is wrong with a template. `fields`: the record fields that exist (None: do not
    check); `variables`: the declared event variables; `row_columns`: the population's extra
    columns when known."""
    env = HTML_ENV if html else TEXT_ENV
    try:
        template = compile_template(source, html=html)
    except LiquidError as exc:
        return [TemplateProblem(path, f"Syntax error: {_first_line(exc.message)}.", _error_line(source, exc, env))]
    problems: list[TemplateProblem] = []
    for name in sorted(set(template.filter_names()) - set(env.filters)):
        index = source.find(name)
        problems.append(TemplateProblem(path, f"Unknown filter {name!r}.", _line(source, index)))
    known = {"profile": fields, "record": fields, "vars": variables, "row": row_columns}
    for root, uses in template.analyze().globals.items():
        for use in uses:
            line = _line(source, use.span.index)
            if root not in ROOTS:
                problems.append(TemplateProblem(path, f"Unknown name {root!r}: use one of {', '.join(ROOTS)}.", line))
                break
            allowed = known.get(root)
            segments = [s for s in use.segments if isinstance(s, str)]
            if allowed is not None and len(segments) > 1 and segments[1] not in allowed:
                what = {"vars": "variable", "row": "population column"}.get(root, "field")
                problems.append(TemplateProblem(path, f"Unknown {what} {root}.{segments[1]}.", line))
    return problems


def render(source: str, context: dict[str, Any], *, html: bool = False) -> str:
    try:
        return compile_template(source, html=html).render(**context)
    except LiquidError as exc:
        raise RenderError(_first_line(exc.message)) from None


def message_context(*, record: dict[str, Any] | None, dimension: str = "profile", row: dict[str, Any] | None = None,
                    variables: dict[str, Any] | None = None, campaign: str = "",
                    message: dict[str, Any] | None = None) -> dict[str, Any]:
    record = record or {}
    return {
        "profile": record if dimension == "profile" else {},
        "record": record,
        "row": row or {},
        "vars": variables or {},
        "campaign": {"name": campaign},
        "message": message or {},
    }
