"""The machinery every guard's settings share: fields bound to environment variables.

A guard's settings are one frozen dataclass deriving from :class:`SettingsGroup`,
defined beside the guard. Each field is declared with :func:`flag`, which binds it to one
variable (``BASTION_*``) and holds its parser and its one-line meaning, so the
documentation's settings table, ``bastion doctor`` and the parser cannot drift apart.
:class:`bastion.settings.Settings` is all the groups in one object.

A group checks what spans its own fields in :meth:`SettingsGroup.check` (cooperatively:
every override returns ``super().check()`` plus its own findings), so a composed object
runs every group's checks and reports every bad variable at once.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from bastion.middleware._flags import FlagError, Mode, Parser

__all__ = ["FlagError", "SettingsError", "SettingsGroup", "Source", "flag", "render"]

Source = Literal["default", "env", "code"]
G = TypeVar("G", bound="SettingsGroup")


def flag(env: str, parse: Parser, default: Any, doc: str, *, recheck: bool = False) -> Any:
    """A settings field bound to the variable ``env``.

    ``recheck``: a value set in code is rendered and parsed again, as the environment's
    would be (for values that reach response headers or widen trust).
    """
    metadata = {"env": env, "parse": parse, "doc": doc, "recheck": recheck}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


class SettingsError(ValueError):
    """Raised at startup when one or more variables are invalid."""

    def __init__(self, errors: list[FlagError]) -> None:
        self.errors = errors
        super().__init__("invalid Bastion settings:\n  " + "\n  ".join(map(str, errors)))


@dataclass(frozen=True)
class SettingsGroup:
    """Base of every guard's settings: construction from the environment and from code,
    where each value came from, and the checks run at construction."""

    #: Section title in the settings reference and ``bastion doctor``.
    title: ClassVar[str] = ""

    # Where each value came from, by variable name; filled in by from_env/__post_init__.
    sources: Mapping[str, Source] = field(
        default_factory=dict, compare=False, repr=False, kw_only=True
    )

    def __post_init__(self) -> None:
        if not self.sources:
            object.__setattr__(self, "sources", self._sources_by_default())
        errors = [*self._mode_errors(), *self._code_value_errors(), *self.check()]
        if errors:
            raise SettingsError(errors)

    # --- construction --------------------------------------------------------------
    @classmethod
    def from_env(cls: type[G], environ: Mapping[str, str] | None = None, **code: Any) -> G:
        """Read every variable once; keyword arguments (set in code) win over the env."""
        settings, errors = cls.collect(environ, **code)
        if settings is None:
            raise SettingsError(errors)
        return settings

    @classmethod
    def collect(
        cls: type[G], environ: Mapping[str, str] | None = None, **code: Any
    ) -> tuple[G | None, list[FlagError]]:
        """Like :meth:`from_env` but returns every error instead of raising."""
        env = os.environ if environ is None else environ
        bound = cls.bound_fields()
        unknown = sorted(set(code) - {f.name for f in bound})
        if unknown:
            raise TypeError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        sources: dict[str, Source] = {}
        errors: list[FlagError] = []
        for f in bound:
            name = f.metadata["env"]
            if f.name in code:
                values[f.name], sources[name] = code[f.name], "code"
            elif name in env:
                try:
                    values[f.name] = f.metadata["parse"](name, env[name])
                    sources[name] = "env"
                except FlagError as error:
                    errors.append(error)
            else:
                sources[name] = "default"
        if errors:
            return None, errors
        try:
            return cls(**values, sources=sources), []
        except SettingsError as error:
            return None, error.errors

    def replace(self: G, **changes: Any) -> G:
        """A copy with some values changed in code."""
        sources = dict(self.sources)
        for f in self.bound_fields():
            if f.name in changes:
                sources[f.metadata["env"]] = "code"
        return dataclasses.replace(self, sources=sources, **changes)

    # --- checks --------------------------------------------------------------------
    def check(self) -> list[FlagError]:
        """Rules that span several fields; overrides add theirs to ``super().check()``."""
        return []

    def warnings(self) -> list[str]:
        """Valid settings that do not do what they seem to ask for (``bastion doctor``
        prints them; ``protect`` logs them at startup). Each names its variables;
        overrides add theirs to ``super().warnings()``."""
        return []

    def is_set(self, env: str) -> bool:
        """True when the variable was given (in the environment or in code)."""
        return self.sources.get(env) in ("env", "code")

    # --- rendering -----------------------------------------------------------------
    def as_env(self) -> dict[str, str]:
        """The settings rendered back as variables (for doctor and manifests)."""
        return {f.metadata["env"]: render(getattr(self, f.name)) for f in self.bound_fields()}

    @classmethod
    def bound_fields(cls) -> tuple[dataclasses.Field[Any], ...]:
        """The fields bound to a variable, in declaration order."""
        return tuple(f for f in dataclasses.fields(cls) if "env" in f.metadata)

    @classmethod
    def flag_table(cls) -> list[tuple[str, str, str]]:
        """(variable, default, meaning) for every field, in declaration order."""
        return [
            (f.metadata["env"], render(default_of(f)), f.metadata["doc"])
            for f in cls.bound_fields()
        ]

    # --- internals -----------------------------------------------------------------
    def _sources_by_default(self) -> dict[str, Source]:
        return {
            f.metadata["env"]: "default" if getattr(self, f.name) == default_of(f) else "code"
            for f in self.bound_fields()
        }

    def _mode_errors(self) -> list[FlagError]:
        """A mode set in code must be a :class:`Mode`: text is what the environment
        holds, and is parsed there, not here."""
        return [
            FlagError(
                f.metadata["env"],
                getattr(self, f.name),
                "Mode.OFF | Mode.OBSERVE | Mode.ENFORCE (set in code)",
            )
            for f in self.bound_fields()
            if f.type in ("Mode", Mode) and not isinstance(getattr(self, f.name), Mode)
        ]

    def _code_value_errors(self) -> list[FlagError]:
        """Values set in code that reach response headers or widen trust get the checks
        the environment's values get (rendered and parsed again)."""
        errors = []
        for f in self.bound_fields():
            env = f.metadata["env"]
            if not f.metadata["recheck"] or self.sources.get(env) != "code":
                continue
            try:
                f.metadata["parse"](env, render(getattr(self, f.name)))
            except FlagError as error:
                errors.append(error)
        return errors


def default_of(f: dataclasses.Field[Any]) -> Any:
    """A field's default value."""
    if f.default is dataclasses.MISSING:
        return f.default_factory()  # type: ignore[misc,operator]
    return f.default


def render(value: object) -> str:
    """A value as it would be written in an env var."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mode):
        return value.value
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
