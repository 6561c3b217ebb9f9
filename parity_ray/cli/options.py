"""Flags from an options dataclass: a command's field, type, default and help live in one place.

Each field becomes ``--field-name`` (its type from the annotation, its help from the comment on its
line, its default from the class); ``field(metadata=...)`` adjusts what a field cannot say alone:

* ``flag`` - the flag's spelling when it is not the field's (``--mode`` for ``modes``);
* ``positional`` - a positional argument (``nargs`` given as its value: None, "+", "?");
* ``negate`` - a field that defaults to True is turned off by this flag (``--no-progress``), whose
  help is ``negate_help``;
* ``sep`` - a list field read from one value split on this separator (``","``, ``";"``);
* ``append`` - a list field given one value per use of a repeatable flag (``--set a=1 --set b=2``);
* ``all`` - a callable giving the list the word ``all`` stands for;
* ``none_word`` - a word (such as ``none``) that gives None;
* ``parse`` - a callable reading the flag's text (a number or a word such as ``auto``);
* ``cli`` - False keeps a field off the command line (set by the engine, not the user);
* ``min`` / ``max`` / ``gt`` / ``lt`` - a number's range (``parity_ray.bounds``), shown in its help and
  checked by :func:`options_from_args` with every number's finiteness;
* ``metavar``, ``required``.

:func:`options_from_args` builds the dataclass back from the parsed namespace.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Callable, Dict, Iterable, Optional, Type

from ..bounds import check_fields
from ..config import field_docs

_TYPE_NAMES = {int: "integers", float: "numbers", str: "names"}


def _unwrap(annotation) -> tuple:
    """``(base type, is_list)`` of ``X``, ``Optional[X]``, ``List[X]`` or ``Optional[List[X]]``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) in (list, typing.List):
        return typing.get_args(annotation)[0], True
    return annotation, False


def _list_parser(kind, sep: str, flag: str, all_names: Optional[Callable[[], list]] = None,
                 none_word: Optional[str] = None) -> Callable[[str], Any]:
    def parse(text: str):
        if none_word is not None and text == none_word:
            return None
        if all_names is not None and text == "all":
            return list(all_names())
        try:
            return [kind(v.strip()) for v in str(text).split(sep) if v.strip()]
        except ValueError:
            what = "comma-separated" if sep == "," else f"'{sep}'-separated"
            raise argparse.ArgumentTypeError(f"takes {what} {_TYPE_NAMES.get(kind, 'values')}, got '{text}'") from None
    return parse


def _word_or(kind, none_word: str) -> Callable[[str], Any]:
    return lambda text: None if text == none_word else kind(text)


def option_fields(cls: Type) -> Iterable[dataclasses.Field]:
    """The fields that are flags: the command's own first, then those it builds on (its bases')."""
    order = {}
    for klass in cls.__mro__:
        for name in getattr(klass, "__annotations__", {}):
            order.setdefault(name, len(order))
    chosen = [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]
    return sorted(chosen, key=lambda f: order.get(f.name, len(order)))


def add_option_flags(parser: argparse.ArgumentParser, cls: Type, skip: Iterable[str] = ()) -> None:
    """One argument per field of the options dataclass ``cls`` (see the module doc)."""
    docs, hints, skip = field_docs(cls), typing.get_type_hints(cls), set(skip)
    for field in option_fields(cls):
        if field.name in skip:
            continue
        meta = field.metadata
        kind, is_list = _unwrap(hints[field.name])
        flag = meta.get("flag", "--" + field.name.replace("_", "-"))
        has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
        default = field.default if field.default is not dataclasses.MISSING else (
            field.default_factory() if field.default_factory is not dataclasses.MISSING else None)
        text = docs.get(field.name, "")
        if has_default and default not in (None, False, "", []) and kind is not bool:
            shown = meta.get("sep", ",").join(map(str, default)) if is_list else default
            text = f"{text} (default: {shown})".strip()
        text = text.replace("%", "%%")
        if "positional" in meta:
            parser.add_argument(field.name, nargs=meta["positional"], metavar=meta.get("metavar"), help=text)
            continue
        kwargs: Dict[str, Any] = {"dest": field.name, "help": text}
        if kind is bool:
            if meta.get("negate"):
                parser.add_argument(meta["negate"], dest=field.name, action="store_false",
                                    help=meta.get("negate_help", f"turn off: {text}"))
            else:
                parser.add_argument(flag, action="store_true", **kwargs)
            continue
        if "parse" in meta:
            kwargs["type"] = meta["parse"]  # a value the annotation alone cannot say (a number or a word)
        elif is_list and meta.get("append"):
            kwargs["action"] = "append"  # repeatable: each use adds one value
        elif is_list:
            kwargs["type"] = _list_parser(kind, meta.get("sep", ","), flag, meta.get("all"), meta.get("none_word"))
        elif "none_word" in meta:
            kwargs["type"] = _word_or(kind, meta["none_word"])
        else:
            kwargs["type"] = kind
        kwargs["metavar"] = meta.get("metavar", flag.lstrip("-").replace("-", "_").upper())
        if not has_default or meta.get("required"):
            kwargs["required"] = True
        else:
            kwargs["default"] = argparse.SUPPRESS  # the dataclass's default applies
        parser.add_argument(flag, **kwargs)


def flag_of(field: dataclasses.Field) -> str:
    """How messages name a field: its flag (``--max-batch-size``), or its name when it is positional."""
    if "positional" in field.metadata or not field.metadata.get("cli", True):
        return field.name
    return field.metadata.get("flag", "--" + field.name.replace("_", "-"))


def check_options(options):
    """Every number of a command's options finite, of its type and in its field's declared range
    (``parity_ray.bounds``); a one-line :class:`UsageError` naming the flag otherwise. Returns ``options``."""
    return check_fields(options, label=flag_of)


def options_from_args(cls: Type, args: argparse.Namespace, **overrides: Any):
    """The options dataclass from parsed flags (fields not given keep their defaults), then ``overrides``;
    its numbers checked (:func:`check_options`) before any command sees them."""
    given = {f.name: getattr(args, f.name) for f in option_fields(cls) if hasattr(args, f.name)}
    return check_options(cls(**{**given, **overrides}))


__all__ = ["add_option_flags", "check_options", "flag_of", "option_fields", "options_from_args"]
