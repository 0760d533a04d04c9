"""MkDocs hook: the settings reference, generated from each guard's settings class.

Every guard defines its settings beside it (:data:`bastion.settings.GROUPS`); each field
is bound to one environment variable, and its metadata holds the parser and the one-line
meaning. The page ``reference/settings.md`` carries the marker ``<!-- settings-table -->``,
replaced at build time by one table per guard (titled by the group's ``title``) with each
variable's default, allowed values (the parser's own words, as ``bastion doctor`` and the
startup error print them) and meaning; a guard's page carries
``<!-- settings-table: TITLE -->`` for its own table alone. ``tests/test_docs.py`` imports
this module to check that every ``BASTION_*`` name the code uses is in the table.
"""

from __future__ import annotations

import re
from typing import Any

from bastion.middleware import _flags
from bastion.middleware._settings_group import SettingsGroup, default_of, render
from bastion.settings import GROUPS

MARKER = "<!-- settings-table -->"
SECTION_MARKER = re.compile(r"<!-- settings-table: (.+?) -->")

# A value no parser accepts: the FlagError it raises states the allowed values.
_PROBE = "\x00!"
# Values a general parser accepts and a narrower one built on it may refuse (CSP
# connect-src is CORS origins without these): the narrower refusal states its own rule.
_NARROWING_PROBES = ("*", "null")


def allowed_values(parse: Any, env: str) -> str:
    """The allowed values, in the words of the parser's own error."""
    if parse is _flags.text:
        return "any text"
    if parse is _flags.comma_list:
        return "a comma list"
    try:
        parse(env, _PROBE)
    except _flags.FlagError as error:
        allowed = str(error.allowed)
    else:
        return "any text"
    allowed = _narrowed(parse, env, allowed)
    if "empty" not in allowed and _accepts_empty_as_none(parse, env):
        allowed += ", or empty"  # an optional value: see its meaning for what empty does
    return allowed


def _narrowed(parse: Any, env: str, allowed: str) -> str:
    """``allowed``, unless the parser refuses a value that text lists as allowed: then
    the words of that refusal, which are the parser's real rule."""
    for value in _NARROWING_PROBES:
        if not re.search(rf"(?<![\w*]){re.escape(value)}(?![\w*])", allowed):
            continue
        try:
            parse(env, value)
        except _flags.FlagError as error:
            return str(error.allowed)
    return allowed


def _accepts_empty_as_none(parse: Any, env: str) -> bool:
    try:
        return parse(env, "") is None
    except _flags.FlagError:
        return False


def rows() -> list[dict[str, str]]:
    """One row per variable, group by group, in declaration order."""
    return [
        {
            "env": f.metadata["env"],
            "default": render(default_of(f)),
            "allowed": allowed_values(f.metadata["parse"], f.metadata["env"]),
            "meaning": f.metadata["doc"],
            "section": group.title,
        }
        for group in GROUPS
        for f in group.bound_fields()
    ]


#: Where a group defined in a private module is imported from.
_PUBLIC_HOMES = {
    "HeaderSettings": "bastion.middleware.headers",
    "CORSSettings": "bastion.middleware.cors",
    "TelemetrySettings": "bastion.instrumentation.telemetry",
}


def _home(group: type[SettingsGroup]) -> str:
    module = _PUBLIC_HOMES.get(group.__qualname__, group.__module__)
    return f"Defined in `{module}.{group.__qualname__}`."


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(section_rows: list[dict[str, str]]) -> list[str]:
    out = ["| Variable | Default | Allowed values | Meaning |", "|---|---|---|---|"]
    for row in section_rows:
        default = f"`{row['default']}`" if row["default"] else "*(empty)*"
        out.append(
            f"| `{row['env']}` | {_cell(default)} | {_cell(row['allowed'])} "
            f"| {_cell(row['meaning'])} |"
        )
    return [*out, ""]


def by_section() -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}
    for row in rows():
        found.setdefault(row["section"], []).append(row)
    return found


def settings_markdown() -> str:
    """The tables, one per guard, in the order of ``GROUPS``."""
    sections = by_section()
    out = []
    for group in GROUPS:
        out += [f"## {group.title}", "", _home(group), "", *table(sections[group.title])]
    return "\n".join(out)


def section_markdown(title: str) -> str:
    """One guard's table; an unknown title fails the build (``mkdocs build`` aborts)."""
    sections = by_section()
    if title not in sections:
        raise ValueError(f"settings-table: no section {title!r}; have {sorted(sections)}")
    return "\n".join(table(sections[title]))


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    markdown = markdown.replace(MARKER, settings_markdown())
    return SECTION_MARKER.sub(lambda m: section_markdown(m.group(1)), markdown)
