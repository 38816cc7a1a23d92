"""What every command answers to `--help`: what it does, its arguments, and the environment
settings it reads, written from the settings classes themselves so that the text follows them.

Settings stay environment variables; a command line takes `--help` and the few arguments a
command needs, and refuses anything else with its usage on stderr and status 2 (argparse).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import textwrap
import typing
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

WIDTH = 100
NAME_COLUMN = 40
"""Where the description starts, after `NAME=default`."""


@dataclass(frozen=True)
class Section:
    """One settings class as a `--help` lists it."""

    title: str
    """The heading, e.g. "API (api/settings.py)"."""
    settings: type[BaseSettings]
    """The class whose fields are listed."""
    described: Collection[str] | None = None
    """Fields listed with their default and description (a name that is not a field is an
    error); the others are named on one line. None: every field is described."""
    hidden: Collection[str] = ()
    """Fields the command does not read (not listed)."""
    others: bool = True
    """Name the fields neither described nor hidden on an `also:` line."""


def parser(prog: str, description: str, sections: Sequence[Section]) -> argparse.ArgumentParser:
    """An argument parser whose `--help` ends with the environment settings of `sections`."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=environment(sections),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def environment(sections: Sequence[Section]) -> str:
    """The settings of `sections`: `NAME=default  what it is`, one variable a line."""
    blocks = ["environment (every setting is an environment variable; defaults shown):"]
    for section in sections:
        fields = section.settings.model_fields
        shown = [name for name in fields if name not in section.hidden]
        described = shown if section.described is None else list(section.described)
        unknown = [name for name in [*described, *section.hidden] if name not in fields]
        if unknown:
            raise ValueError(f"{section.settings.__name__} has no field {', '.join(unknown)}")
        descriptions = attribute_docstrings(section.settings)
        lines = [f"  {section.title}:"]
        for name in described:
            field = fields[name]
            lines.append(
                _line(
                    _entry(section.settings, name, field),
                    _describe(field, descriptions.get(name, "")),
                )
            )
        others = [
            variable_names(section.settings, name, fields[name])[0]
            for name in shown
            if name not in described
        ]
        if others and section.others:
            lines.append(
                textwrap.fill(
                    "also: " + ", ".join(others),
                    WIDTH,
                    initial_indent="    ",
                    subsequent_indent="      ",
                    break_on_hyphens=False,
                )
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def variable_names(settings: type[BaseSettings], name: str, field: FieldInfo) -> list[str]:
    """The environment variables a field is read from, the first one preferred."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [choice.upper() for choice in alias.choices if isinstance(choice, str)]
    if isinstance(alias, str):
        return [alias.upper()]
    prefix = settings.model_config.get("env_prefix", "")
    return [f"{prefix}{name}".upper()]


def default_text(field: FieldInfo) -> str | None:
    """A field's default as it would be written in the environment; None when unset."""
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        computed = not isinstance(field.default_factory, type)
        return f"{_format(value)} (on this machine)" if computed else _format(value)
    if field.default is PydanticUndefined:
        return "(required)"
    return None if field.default is None else _format(field.default)


def attribute_docstrings(settings: type[BaseSettings]) -> dict[str, str]:
    """The docstring under each field of `settings`, from its source; {} without a source."""
    try:
        source = textwrap.dedent(inspect.getsource(settings))
    except (OSError, TypeError):
        return {}
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    found: dict[str, str] = {}
    for statement, following in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            found[statement.target.id] = inspect.cleandoc(following.value.value)
    return found


def _entry(settings: type[BaseSettings], name: str, field: FieldInfo) -> str:
    """`NAME=default (or OTHER_NAME)`; no `=` for a setting unset by default."""
    variables = variable_names(settings, name, field)
    default = default_text(field)
    entry = variables[0] if default is None else f"{variables[0]}={default}"
    return entry if len(variables) == 1 else f"{entry} (or {', '.join(variables[1:])})"


def _format(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _describe(field: FieldInfo, docstring: str) -> str:
    """The first sentence of the field's docstring, and its choices when it has a few."""
    text = " ".join(docstring.split())
    end = text.find(". ")
    sentence = text if end < 0 else text[: end + 1]
    if typing.get_origin(field.annotation) is typing.Literal:
        choices = "|".join(str(choice) for choice in typing.get_args(field.annotation))
        sentence = f"{sentence} One of {choices}.".strip()
    return sentence


def _line(entry: str, description: str) -> str:
    indent = " " * NAME_COLUMN
    if not description:
        return f"    {entry}"
    if len(entry) + 4 < NAME_COLUMN - 1:
        first = f"    {entry}".ljust(NAME_COLUMN) + description
        return textwrap.fill(first, WIDTH, subsequent_indent=indent)
    wrapped = textwrap.fill(description, WIDTH, initial_indent=indent, subsequent_indent=indent)
    return f"    {entry}\n{wrapped}"
