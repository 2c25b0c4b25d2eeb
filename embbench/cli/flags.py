"""Command-line flags derived from the declarations (options.py, config.RunConfig).

`with_flags` adds one Typer option per declared field to a command and hands the values given
(None when a flag was not given) to it as one mapping, so a new option needs no line here or
in cli.py. Typer reads a command's parameters from its signature; the decorator extends the
signature, as uvicorn's CLI maps its flags onto one `Config`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import typer

from embbench.config.options import Spec, base_type, option_fields
from embbench.config.run import run_flag_fields
from embbench.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])
Field = tuple[dataclasses.Field[Any], Any, Spec]


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_list(text: str, flag: str, kind: type = int) -> tuple[Any, ...]:
    """`10,100,1000` as a tuple; a usage error naming the flag otherwise."""
    try:
        return tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        word = "integers" if kind is int else "numbers"
        raise ConfigError(f"{flag} takes {word} separated by commas, got {text!r}") from None


def _is_list(annotation: Any) -> bool:
    return bool(typing.get_origin(annotation) is tuple)


def _parameter(each: dataclasses.Field[Any], annotation: Any, spec: Spec) -> inspect.Parameter:
    kind = base_type(annotation)
    flag = spec.flag or flag_name(each.name)
    help_text = spec.help + (f" [default: {each.default}]" if each.default is not None else "")
    if kind is bool:
        decls = [f"{flag_name(each.name)}/--no-{each.name.replace('_', '-')}"]
        hint: Any = bool | None
    elif _is_list(annotation):
        # Lists are given as one comma-separated value and parsed by the command.
        decls, hint = [flag], str | None
    else:
        decls, hint = [flag], kind | None
    return inspect.Parameter(
        each.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(None, *decls, help=help_text, show_default=False),
        annotation=hint,
    )


def with_flags(
    target: str, fields: Iterable[Field], *, skip: Iterable[str] = ()
) -> Callable[[F], F]:
    """Add a flag per field to a command; the command receives them as `target` (a dict of
    the given values, None for flags not given, lists parsed)."""
    chosen = [f for f in fields if f[0].name not in set(skip)]

    def decorate(func: F) -> F:
        signature = inspect.signature(func)
        kept = [p for p in signature.parameters.values() if p.name != target]
        names = {p.name for p in kept}
        added = [_parameter(*f) for f in chosen if f[0].name not in names]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given: dict[str, Any] = {}
            for each, annotation, spec in chosen:
                if each.name not in kwargs:
                    continue
                value = kwargs.pop(each.name)
                if value is not None and _is_list(annotation):
                    item = typing.get_args(annotation)[0]
                    value = parse_list(value, spec.flag or flag_name(each.name), item)
                given[each.name] = value
            return func(*args, **{target: given}, **kwargs)

        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*kept, *added]
        )
        wrapper.__annotations__ = {
            **{k: v for k, v in func.__annotations__.items() if k != target},
            **{p.name: p.annotation for p in added},
        }
        return wrapper  # type: ignore[return-value]

    return decorate


def server_flags(*, skip: Iterable[str] = ()) -> Callable[[F], F]:
    """Every server option as a flag, handed to the command as `server`."""
    return with_flags("server", option_fields(), skip=skip)


def run_flags(*, skip: Iterable[str] = ()) -> Callable[[F], F]:
    """Every run setting declared as a flag, handed to the command as `settings`."""
    return with_flags("settings", run_flag_fields(), skip=skip)
