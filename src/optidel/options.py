"""What every command module shares: the ``--config``/``--set`` options, help defaults read from the config
dataclasses, and the turning of known bad-input errors into one-line :class:`~optidel.runtime.errors.OptidelError`.

Every command builds its config with :func:`optidel.config.layer_config` (defaults < ``--config FILE`` < named
options < ``--set key=value``); a named option's default is None ("not given"), and its help text shows the
dataclass field's default through :func:`option`, so no default is restated by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from optidel.config import PRECEDENCE, default_help
from optidel.runtime.errors import OptidelError

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="YAML file of config keys (as in a run's config.yaml; nested keys as mappings or dotted).",
        show_default=False,
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override any config key: key=value, dotted for nested (repeatable; applied last).",
        show_default=False,
    ),
]

__all__ = ["PRECEDENCE", "ConfigOption", "InputError", "SetOption", "given", "input_errors", "option"]


class InputError(OptidelError):
    """Bad input reported by a stage with a plain ``ValueError``/``FileNotFoundError`` (exit status 2)."""

    exit_code = 2


def option(cls: type, key: str, help: str, *decls: str, none: str | None = None, **kwargs: Any) -> Any:
    """A ``typer.Option`` for config key ``key`` of ``cls`` whose help ends with the field's default.

    Args:
        cls: the config dataclass.
        key: the (dotted) config key; old names in the class's ``RENAMED`` table are followed.
        help: what the option does.
        decls: the option's names (``"--out", "-o"``); default: typer's from the parameter name.
        none: what a default of None means (e.g. ``"read from the file"``).
        kwargs: more ``typer.Option`` arguments.
    """
    text = f"{help} {default_help(cls, key, none=none)}"
    return typer.Option(*decls, help=text, show_default=False, **kwargs)


def given(**options: Any) -> dict[str, Any]:
    """The options the user gave (None or an empty repeatable = not given); tuples as lists, paths as strings."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if value is None or (isinstance(value, list | tuple) and not value):
            continue
        if isinstance(value, list | tuple):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        out[key] = str(value) if isinstance(value, Path) else value
    return out


@contextmanager
def input_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Turn the listed exception types (a stage's bad-input errors) into a one-line :class:`InputError`."""
    try:
        yield
    except OptidelError:
        raise
    except kinds as e:
        raise InputError(str(e).splitlines()[0] if str(e) else type(e).__name__) from e
