"""The documentation: README length, and the settings reference generated from the code.

``make docs`` (``mkdocs build --strict``, part of ``make test``) checks links, anchors and
that every API name in docs/reference/api.md resolves; these tests check what it cannot:
that no ``BASTION_*`` variable the code reads is missing from the generated table.
"""

from __future__ import annotations

import importlib.util
import io
import re
import tokenize
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"(?<![A-Za-z0-9_])BASTION_[A-Z0-9_]*[A-Z0-9_]")
# Where service settings are read, documented or set: every name must be in the table.
SETTING_PLACES = ("middleware", "instrumentation", "deploy", "examples")
# The project's own tooling: every name must be on the settings page (its tooling table).
TOOLING_PLACES = ("benchmarks", "compat", "tests", ".ci", "Makefile")
TEXT_SUFFIXES = {".py", ".yaml", ".yml", ".env", ".md", ".json", ".toml", ".txt", ""}


def load_hook() -> ModuleType:
    path = ROOT / "docs" / "hooks" / "settings_table.py"
    spec = importlib.util.spec_from_file_location("bastion_docs_settings_table", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def names_in(path: Path) -> set[str]:
    """``BASTION_*`` names in a file; in Python only those in strings and comments
    (a constant such as ``BASTION_HEADER = "x-bastion-timeout-ms"`` is no variable)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix != ".py":
        return set(NAME.findall(text))
    found: set[str] = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type in (tokenize.STRING, tokenize.COMMENT) or token.type == getattr(
            tokenize, "FSTRING_MIDDLE", -1
        ):
            found |= set(NAME.findall(token.string))
    return found


def names_under(places: tuple[str, ...]) -> dict[str, set[str]]:
    """name → files using it."""
    used: dict[str, set[str]] = {}
    for place in places:
        base = ROOT / place
        files = [base] if base.is_file() else sorted(base.rglob("*"))
        for path in files:
            if not path.is_file() or path.suffix not in TEXT_SUFFIXES:
                continue
            if any(part in {"node_modules", "__pycache__"} for part in path.parts):
                continue
            if path.resolve() == Path(__file__).resolve():
                continue
            for name in names_in(path):
                used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return used


def missing(used: dict[str, set[str]], documented: set[str]) -> dict[str, set[str]]:
    """Names not documented. A name ending in ``_`` is a family written as a prefix
    (``BASTION_BQ_TIMEOUT_<CLASS>``): some documented name must start with it."""
    return {
        name: files
        for name, files in used.items()
        if name not in documented
        and not (name.endswith("_") and any(d.startswith(name) for d in documented))
    }


@pytest.fixture(scope="module")
def hook() -> ModuleType:
    return load_hook()


def test_readme_is_at_most_250_lines() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"


def test_every_setting_used_in_code_is_in_the_generated_table(hook: ModuleType) -> None:
    table = {row["env"] for row in hook.rows()}
    used = names_under(SETTING_PLACES)
    assert "BASTION_DEADLINE_SECONDS" in used  # the scan finds what it should
    assert missing(used, table) == {}


def test_every_tooling_variable_is_on_the_settings_page(hook: ModuleType) -> None:
    page = (ROOT / "docs" / "reference" / "settings.md").read_text(encoding="utf-8")
    documented = {row["env"] for row in hook.rows()} | set(NAME.findall(page))
    assert missing(names_under(TOOLING_PLACES), documented) == {}


def test_the_table_has_every_settings_field_with_default_and_allowed_values(
    hook: ModuleType,
) -> None:
    from bastion.settings import flag_table

    rows = hook.rows()
    assert [r["env"] for r in rows] == [env for env, _, _ in flag_table()]
    for row in rows:
        assert row["allowed"], row
    settings_module = importlib.import_module("bastion.settings")
    page = hook.settings_markdown()
    for group in settings_module.GROUPS:  # each guard's settings are one section
        home = re.search(rf"Defined in `([\w.]+)\.{group.__qualname__}`", page)
        assert home is not None and "._" not in home[1], group  # a public import path
        assert getattr(importlib.import_module(home[1]), group.__qualname__) is group
        assert {
            r["section"] for r in rows if r["env"] in {e for e, _, _ in group.flag_table()}
        } == {group.title}
    by_env = {r["env"]: r for r in rows}
    assert by_env["BASTION_HEADERS"]["allowed"] == "off | observe | enforce"
    assert by_env["BASTION_DEADLINE_SECONDS"]["default"] == "25"
    assert by_env["BASTION_BQ_MAX_BYTES_BILLED_READ"]["allowed"].endswith("or empty")


def test_a_missing_variable_is_reported(tmp_path: Path) -> None:
    source = tmp_path / "guard.py"
    source.write_text('FLAG = "BASTION_NOT_A_SETTING"\nBASTION_CONSTANT = 1\n# BASTION_BQ_X_\n')
    used = {name: {"guard.py"} for name in names_in(source)}
    assert used.keys() == {"BASTION_NOT_A_SETTING", "BASTION_BQ_X_"}
    assert missing(used, {"BASTION_BQ_X_READ"}) == {"BASTION_NOT_A_SETTING": {"guard.py"}}


def test_the_settings_page_carries_the_marker_the_hook_replaces(hook: ModuleType) -> None:
    page = (ROOT / "docs" / "reference" / "settings.md").read_text(encoding="utf-8")
    assert hook.MARKER in page
    rendered = hook.on_page_markdown(page, page=None)
    assert hook.MARKER not in rendered
    assert "| `BASTION_CORS_ORIGINS` | *(empty)* |" in rendered


def test_a_guard_page_gets_its_own_section_and_an_unknown_one_fails(hook: ModuleType) -> None:
    page = "# Deadlines\n\n<!-- settings-table: Request deadlines -->\n"
    rendered = hook.on_page_markdown(page, page=None)
    assert "| `BASTION_DEADLINE_SECONDS` | `25` |" in rendered
    assert "BASTION_CORS_ORIGINS" not in rendered
    with pytest.raises(ValueError, match="no section 'Deadline'"):
        hook.on_page_markdown("<!-- settings-table: Deadline -->", page=None)


def test_make_docs_builds_strictly_and_make_test_runs_it() -> None:
    """``--quiet`` hides warnings from ``--strict``'s count (the build then passes with an
    unresolved API name), so the recipe must not use it."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^docs:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe is not None
    assert "mkdocs build --strict" in recipe.group(1)
    assert not re.search(r"\s(-q|--quiet)\b", recipe.group(1))
    test_target = re.search(r"^test:(.*)$", makefile, re.M)
    assert test_target is not None and "docs" in test_target.group(1).split()
