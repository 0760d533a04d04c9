"""Griffe extension: the code's reST roles read as Markdown code in the API pages.

Docstrings cross-reference with Sphinx roles (``:class:`~bastion.settings.Settings```);
mkdocstrings renders Markdown, where a role would show as raw text. Each role becomes an
inline code span of its target (the last dotted part with ``~``, as Sphinx shows it).
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj|const):`(~?)([^`]+)`")


def _code(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class SphinxRolesToCode(Extension):
    def on_instance(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, obj.docstring.value)
