"""What a channel message is made of, how it is checked and how it is rendered for one recipient.

- email: subject, preheader, html and/or text (the text part is generated from the HTML when
  absent);
- sms: text (with its segment count: GSM-7 160/153, otherwise UCS-2 70/67);
- push: title, body, deep_link, data (an object of string templates);
- file: columns written per recipient (a template per column)."""

from __future__ import annotations

import html as html_lib
import re
from html.parser import HTMLParser
from typing import Any

import jsonschema

from apps.channels.personalization import TemplateProblem, check_template, render

TEMPLATE = {"type": "string", "maxLength": 200_000}

SCHEMAS: dict[str, dict[str, Any]] = {
    "email": {
        "type": "object", "additionalProperties": False, "required": ["subject"],
        "anyOf": [{"required": ["html"]}, {"required": ["text"]}],
        "properties": {"subject": {"type": "string", "minLength": 1, "maxLength": 2000},
                       "preheader": {"type": "string", "maxLength": 2000}, "html": TEMPLATE, "text": TEMPLATE},
    },
    "sms": {
        "type": "object", "additionalProperties": False, "required": ["text"],
        "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 5000}},
    },
    "push": {
        "type": "object", "additionalProperties": False, "required": ["title", "body"],
        "properties": {"title": {"type": "string", "minLength": 1, "maxLength": 500},
                       "body": {"type": "string", "minLength": 1, "maxLength": 4000},
                       "deep_link": {"type": "string", "maxLength": 2000},
                       "data": {"type": "object", "maxProperties": 50,
                                "additionalProperties": {"type": "string", "maxLength": 2000}}},
    },
    "file": {
        "type": "object", "additionalProperties": False, "required": ["columns"],
        "properties": {"columns": {"type": "array", "minItems": 1, "maxItems": 200, "items": {
            "type": "object", "additionalProperties": False, "required": ["name", "value"],
            "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 100},
                           "value": {"type": "string", "maxLength": 5000}}}}},
    },
}

HTML_PARTS = {"html"}


def _parts(channel: str, content: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, template) of every template in `content`."""
    if channel == "file":
        return [(f"columns.{i}.value", c["value"]) for i, c in enumerate(content.get("columns", []))]
    parts = [(name, value) for name, value in content.items() if isinstance(value, str)]
    for name, value in (content.get("data") or {}).items():
        parts.append((f"data.{name}", value))
    return parts


def content_problems(channel: str, content: Any, *, fields: set[str] | None = None,
                     variables: set[str] | None = None, row_columns: set[str] | None = None) -> list[TemplateProblem]:
    """Everything wrong with `content` for `channel`: its shape, then each template."""
    schema = SCHEMAS.get(channel)
    if schema is None:
        return [TemplateProblem("channel", f"Unknown channel {channel!r}.")]
    validator = jsonschema.Draft202012Validator(schema)
    shape = sorted(validator.iter_errors(content), key=lambda e: list(e.absolute_path))
    if shape:
        return [TemplateProblem(".".join(str(p) for p in e.absolute_path),
                                "Give an html or a text part." if e.validator == "anyOf" else e.message) for e in shape]
    problems: list[TemplateProblem] = []
    for path, source in _parts(channel, content):
        problems += check_template(source, path=path, html=path in HTML_PARTS, fields=fields, variables=variables,
                                   row_columns=row_columns)
    return problems


# Rendering --------------------------------------------------------------------------------------

def render_content(channel: str, content: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """The message for one recipient. Raises RenderError."""
    if channel == "email":
        subject = " ".join(render(content["subject"], context).split())
        html = render(content["html"], context, html=True) if content.get("html") else ""
        preheader = " ".join(render(content["preheader"], context).split()) if content.get("preheader") else ""
        text = render(content["text"], context) if content.get("text") else html_to_text(html)
        if html and preheader:
            html = with_preheader(html, preheader)
        return {"subject": subject, "preheader": preheader, "html": html, "text": text}
    if channel == "sms":
        text = render(content["text"], context).strip()
        return {"text": text, "segments": sms_segments(text)}
    if channel == "push":
        return {"title": render(content["title"], context).strip(), "body": render(content["body"], context).strip(),
                "deep_link": render(content.get("deep_link", ""), context).strip(),
                "data": {name: render(value, context) for name, value in (content.get("data") or {}).items()}}
    if channel == "file":
        return {"columns": {c["name"]: render(c["value"], context) for c in content["columns"]}}
    raise ValueError(f"unknown channel {channel!r}")


def with_preheader(html: str, preheader: str) -> str:
    """Put the preheader first in the body, hidden: mail clients show it next to the subject."""
    hidden = ('<div style="display:none;max-height:0;overflow:hidden;mso-hide:all">'
              f"{html_lib.escape(preheader)}</div>")
    match = re.search(r"<body[^>]*>", html, re.I)
    if match:
        return html[: match.end()] + hidden + html[match.end():]
    return hidden + html


class _TextExtractor(HTMLParser):
    BLOCKS = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.links: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head", "title"):
            self.skip += 1
        elif tag in self.BLOCKS:
            self.out.append("\n")
        if tag == "li":
            self.out.append("- ")
        if tag == "a":
            self.links.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCKS:
            self.out.append("\n")
        if tag == "a" and self.links:
            href = self.links.pop()
            if href and href.startswith(("http://", "https://")):
                self.out.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(data)


def html_to_text(html: str) -> str:
    """A readable text part from an HTML part: blocks become lines, links keep their URL."""
    if not html:
        return ""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.out).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
           "¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENDED = set("^{}\\[~]|€\f")


def sms_segments(text: str) -> int:
    """How many SMS parts `text` is sent as (GSM-7: 160 alone, 153 per part; UCS-2: 70 / 67)."""
    if not text:
        return 0
    if all(c in GSM7 or c in GSM7_EXTENDED for c in text):
        units = sum(2 if c in GSM7_EXTENDED else 1 for c in text)
        single, multi = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if units <= single else -(-units // multi)

