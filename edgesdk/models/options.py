"""Typed export options: one frozen dataclass per family, declared next to its recipe.

A family subclasses ``ExportOptions`` with one field per option, each made by ``option()``: a
default, a help line, the modes it applies to, and an ``OptionType`` that reads both Python
values and command-line strings. ``ExportOptions.parse`` turns user input (``--option k=v``,
the export flags, or ``edgesdk.export(..., **kwargs)``) into that dataclass once; the recipe
receives the typed object. An unknown or ill-typed option is one UsageError (exit 2) that lists
the valid options with their types.

Torch-free: ``edgesdk models`` and the CLI read the declarations without building a model.
"""
from __future__ import annotations

import json
import re
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence, TypeVar

from edgesdk.errors import UsageError

METADATA_KEY = "edgesdk_option"

Options = TypeVar("Options", bound="ExportOptions")


@dataclass(frozen=True)
class OptionType:
    """How one option's value is read.

    ``name`` is what messages and ``edgesdk models`` show ("int >= 1"); ``convert`` takes a
    Python value or a command-line string and returns the typed value, raising ValueError or
    TypeError when it cannot. ``command_line`` is False for values with no text form (arrays).
    """

    name: str
    convert: Callable[[Any], Any]
    command_line: bool = True


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(minimum: int | None = None) -> OptionType:
    """An int (``"3"`` from the command line), at least ``minimum`` when given."""

    def convert(value: Any) -> int:
        if isinstance(value, str):
            value = int(value.strip())
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(value)
        if minimum is not None and value < minimum:
            raise ValueError(value)
        return value

    return OptionType("int" if minimum is None else f"int >= {minimum}", convert)


def number(minimum: float | None = None, exclusive: bool = False) -> OptionType:
    """A float (ints accepted), at least (or, ``exclusive``, above) ``minimum`` when given."""

    def convert(value: Any) -> float:
        if isinstance(value, str):
            value = float(value.strip())
        if not _is_number(value):
            raise TypeError(value)
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(value)
        if minimum is not None and (value <= minimum if exclusive else value < minimum):
            raise ValueError(value)
        return value

    bound = "" if minimum is None else f" {'>' if exclusive else '>='} {minimum:g}"
    return OptionType(f"float{bound}", convert)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise TypeError(value)


BOOLEAN = OptionType("bool", _boolean)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError(value)
    return value.strip()


TEXT = OptionType("text", _text)


def _size_pair(value: Any) -> tuple[int, int]:
    """224, (48, 80), "224", "48x80", "48,80" or "[48, 80]" -> (height, width) in pixels."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = json.loads(text)
        else:
            parts = [p for p in re.split(r"[x,]", text.lower()) if p.strip()]
            value = [int(p) for p in parts]
            value = value[0] if len(value) == 1 else value
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in value)):
        raise TypeError(value)
    if min(value) < 1:
        raise ValueError(value)
    return int(value[0]), int(value[1])


IMAGE_SIZE = OptionType("int or HxW pixels", _size_pair)


def python_only(name: str, convert: Callable[[Any], Any]) -> OptionType:
    """A value with no command-line spelling (arrays, objects): Python callers only."""
    return OptionType(name, convert, command_line=False)


@dataclass(frozen=True)
class DeclaredOption:
    """One option as declared: what ``edgesdk models FAMILY`` lists and messages name."""

    name: str
    type: OptionType
    default: Any
    help: str
    modes: tuple[str, ...] | None  # None: every mode the family exports
    default_text: str | None = None  # shown instead of the default when it is derived (None -> "preset's")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def shown_default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        return "-" if self.default is None else str(self.default)

    def summary(self) -> str:
        where = "" if self.modes is None else f", mode {'/'.join(self.modes)}"
        python = "" if self.type.command_line else ", Python only"
        return f"{self.name} ({self.type.name}{where}{python})"


def option(default: Any, help: str, type: OptionType, modes: Sequence[str] | None = None,
           default_text: str | None = None) -> Any:
    """A dataclass field declaring one export option (see ``DeclaredOption``)."""
    return field(default=default, metadata={METADATA_KEY: (type, help, None if modes is None else tuple(modes),
                                                           default_text)})


@dataclass(frozen=True)
class ExportOptions:
    """Base of every family's options. Fields are converted (and checked) on construction.

    ``family`` names the family in messages; subclasses set it as a class variable.
    """

    family: ClassVar[str] = "model"

    def __post_init__(self) -> None:
        for declared in self.declared():
            value = getattr(self, declared.name)
            if value is None:
                continue
            object.__setattr__(self, declared.name, self._convert(declared, value))

    @classmethod
    def declared(cls) -> tuple[DeclaredOption, ...]:
        rows = []
        for item in fields(cls):
            if METADATA_KEY not in item.metadata:
                continue
            kind, help_text, modes, default_text = item.metadata[METADATA_KEY]
            default = None if item.default is MISSING else item.default
            rows.append(DeclaredOption(item.name, kind, default, help_text, modes, default_text))
        return tuple(rows)

    @classmethod
    def valid_options_text(cls) -> str:
        rows = cls.declared()
        return "valid options: " + (", ".join(row.summary() for row in rows) if rows else "none")

    @classmethod
    def _convert(cls, declared: DeclaredOption, value: Any) -> Any:
        if isinstance(value, str) and not declared.type.command_line:
            raise UsageError(f"{cls.family} export option {declared.name} takes a {declared.type.name} "
                             f"(Python only), not text; {cls.valid_options_text()}")
        try:
            return declared.type.convert(value)
        except (ValueError, TypeError, json.JSONDecodeError):
            raise UsageError(f"{cls.family} export option {declared.name} must be {declared.type.name}, "
                             f"not {value!r}; {cls.valid_options_text()}") from None

    @classmethod
    def parse(cls: type[Options], values: Mapping[str, Any], mode: str) -> Options:
        """User input (names with ``-`` or ``_``; values typed or as text) -> the typed options.

        None means "not given" (the default applies). Raises UsageError for an unknown name, a
        value of the wrong type, or an option that does not apply to ``mode``.
        """
        given = {name.replace("-", "_"): value for name, value in values.items() if value is not None}
        known = {row.name: row for row in cls.declared()}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise UsageError(f"unknown {cls.family} export options: {', '.join(unknown)}; {cls.valid_options_text()}")
        options = cls(**given)
        options.check_mode(mode, given)
        return options

    def check_mode(self, mode: str, given: Iterable[str] | None = None) -> None:
        """Refuse an option set (``given``, else: set away from its default) that ``mode`` ignores."""
        for row in self.declared():
            if row.modes is None or mode in row.modes:
                continue
            chosen = row.name in given if given is not None else getattr(self, row.name) != row.default
            if chosen:
                raise UsageError(f"{self.family} export option {row.name} applies to mode {'/'.join(row.modes)}, "
                                 f"not {mode!r}")


@dataclass(frozen=True)
class NoExportOptions(ExportOptions):
    """For a family whose recipe takes no options."""
