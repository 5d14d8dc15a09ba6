"""Typed configs: frozen dataclasses with defaults, and ONE layering of settings used by every command.

Every stage has a config dataclass. :func:`layer_config` builds it from, in increasing precedence::

    dataclass defaults  <  base (a caller's starting values)  <  --config FILE  <  named options  <  --set key=value

Dotted keys reach nested dataclasses (``--set cluster.k=64``, ``mae: {mask_ratio: 0.6}`` in YAML); ``--set`` values
are parsed as YAML scalars. Every layer is checked against the class as it is added, so a wrong key or a wrong type
is a one-line :class:`ConfigError` naming the key and where it came from (the file, ``--set``, an option).

A class may declare ``RENAMED: ClassVar[dict[str, str]]`` (old key -> new dotted key). The layering applies it to every
layer (YAML, ``--set``, options, the Python API's ``base``) with a :class:`ConfigDeprecationWarning` that names the new
key, so old configs keep working for one release. A class may also declare a classmethod
``migrate_legacy(data: dict, source: str) -> dict`` that rewrites an older layout of one layer (for example
:class:`optidel.bench.config.BenchmarkConfig`'s lists of ``"key=value"`` strings).

:func:`save_config` writes the resolved config as ``config.yaml`` into the run directory; :func:`load_config` reads
it back. Command-line help texts take their defaults from the dataclass fields through :func:`default_help`.

Examples:
    >>> @dataclasses.dataclass(frozen=True)
    ... class Cfg:
    ...     lr: float = 1e-3
    ...     steps: int = 100
    >>> layer_config(Cfg, options={"steps": 5, "lr": None}, sets=["lr=0.1"])
    Cfg(lr=0.1, steps=5)
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import types
import typing
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from optidel.runtime.atomic import atomic_write_text
from optidel.runtime.errors import OptidelError

T = TypeVar("T")

PRECEDENCE = "Precedence: defaults < --config FILE < named options < --set key=value."


class ConfigError(OptidelError, ValueError):
    """A config file, option or override that does not fit the config's fields or types (one line, key named)."""

    exit_code = 2


class ConfigDeprecationWarning(FutureWarning):
    """An old config key or layout that still works for one release; the message names the new one."""


# ----------------------------------------------------------------------------------------------------------------------
# dataclass <-> plain dict
# ----------------------------------------------------------------------------------------------------------------------


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, YAML-safe dict of a (nested) config dataclass."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, Mapping):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def config_hash(cfg: Any) -> str:
    """A config's fingerprint: the first 12 hex digits of the sha256 of its :func:`to_dict` as canonical JSON (keys
    sorted, no spaces), so neither key order nor YAML layout changes it.

    Equal hashes mean equal settings, not equal code: the commit that ran a config is recorded apart from it.
    """
    text = json.dumps(to_dict(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _coerce_scalar(tp: Any, value: Any, key: str) -> Any:
    """Path, bool, int, float and str fields (anything else passes through unchanged)."""
    if tp is Path:
        if isinstance(value, dict | list):
            raise ConfigError(f"{key}: expected a path, got {value!r}")
        return Path(str(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError as e:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from e
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from e
    if tp is str:
        if isinstance(value, dict | list | tuple):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Convert a YAML value to the field type ``tp`` (dataclass, Optional, Literal, tuple, list, dict, scalars)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, key)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:  # X | None: X's own message
            raise errors[0]
        names = " or ".join(_type_name(a) for a in args)
        raise ConfigError(f"{key}: {value!r} is not a {names}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        if isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if not isinstance(value, list | tuple):
            value = [value]
        args = typing.get_args(tp)
        if (
            origin is tuple and len(args) > 1 and Ellipsis not in args
        ):  # fixed length, e.g. tuple[float, float]
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {value!r}")
            return tuple(_coerce(a, v, key) for a, v in zip(args, value, strict=True))
        item_tp = args[0] if args else Any
        items = [_coerce(item_tp, v, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    return _coerce_scalar(tp, value, key)


def _unknown_key_message(cls: type, unknown: Sequence[str], names: Sequence[str], prefix: str) -> str:
    """``unknown config key x.stpes (did you mean x.steps?)``; the known keys listed when nothing is close."""
    parts, all_close = [], True
    for u in unknown:
        close = difflib.get_close_matches(u, names, n=1)
        all_close = all_close and bool(close)
        parts.append(prefix + u + (f" (did you mean {prefix}{close[0]}?)" if close else ""))
    known = "" if all_close else f"; {cls.__name__} keys: {', '.join(sorted(names))}"
    return f"unknown config key {', '.join(parts)}{known}"


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; an unknown key or a wrong type is a :class:`ConfigError` naming it."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(map(str, data)) - set(names))
    if unknown:
        raise ConfigError(_unknown_key_message(cls, unknown, names, prefix))
    kwargs = {k: _coerce(hints[k], v, prefix + k) for k, v in data.items()}
    return cls(**kwargs)


# ----------------------------------------------------------------------------------------------------------------------
# key=value overrides, merging, renamed keys
# ----------------------------------------------------------------------------------------------------------------------


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{key}: {p} is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}`` (values parsed as YAML scalars)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        _set_dotted(tree, key, value)
    return tree


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, recursively for nested mappings (a new dict; the inputs are not changed)."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


_MISSING = object()


def _get_dotted(tree: Mapping[str, Any], key: str) -> Any:
    node: Any = tree
    for p in key.split("."):
        if not isinstance(node, Mapping) or p not in node:
            return _MISSING
        node = node[p]
    return node


def _field_class(cls: type, name: str) -> type | None:
    """The dataclass type of field ``name`` of ``cls`` (also inside ``X | None``); None for other fields."""
    if not dataclasses.is_dataclass(cls):
        return None
    tp = typing.get_type_hints(cls).get(name)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tps = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        tp = tps[0] if len(tps) == 1 else None
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def renamed_keys(cls: type) -> dict[str, str]:
    """The class's ``RENAMED`` table (old key -> new dotted key); empty when it declares none."""
    table = getattr(cls, "RENAMED", None)
    return dict(table) if isinstance(table, Mapping) else {}


def canonical_key(cls: type, key: str) -> str:
    """The current dotted name of ``key`` (old names from ``RENAMED`` tables followed, no warning)."""
    table = renamed_keys(cls)
    if key in table:
        return canonical_key(cls, table[key])
    head, _, rest = key.partition(".")
    sub = _field_class(cls, head)
    if rest and sub is not None:
        return f"{head}.{canonical_key(sub, rest)}"
    return key


def migrate(cls: type, data: Mapping[str, Any], source: str = "config", warn: bool = True) -> dict[str, Any]:
    """One layer of settings in the class's current layout: legacy forms and ``RENAMED`` keys rewritten.

    Args:
        cls: the config dataclass.
        data: a nested mapping of keys (one layer: a YAML file, ``--set`` overrides, options).
        source: where the layer came from, for the warning (``config file x.yaml``, ``--set``).
        warn: issue a :class:`ConfigDeprecationWarning` for every old key (off when reading our own files).

    Returns:
        A new nested dict; the input is not changed.
    """
    tree: dict[str, Any] = {}
    for key, value in copy.deepcopy(
        dict(data)
    ).items():  # dotted keys in a mapping (mae.mask_ratio: 0.6) nest
        if isinstance(key, str) and "." in key:
            _set_dotted(tree, key, value)
        else:
            tree[key] = (
                merge(tree[key], value)
                if isinstance(tree.get(key), dict) and isinstance(value, Mapping)
                else value
            )
    legacy = getattr(cls, "migrate_legacy", None)
    if callable(legacy):
        tree = legacy(tree, source)
    for old, new in renamed_keys(cls).items():
        if old not in tree:
            continue
        if isinstance(tree[old], Mapping) and new.split(".")[0] == old:
            continue  # the old scalar key is now a section of the same name, and this is the section
        value = tree.pop(old)
        if _get_dotted(tree, new) is not _MISSING:
            raise ConfigError(f"{source}: {old!r} and its new name {new!r} are both given; keep {new!r}")
        if warn:
            warnings.warn(
                f"{source}: config key {old!r} is now {new!r}; the old name works for one more release",
                ConfigDeprecationWarning,
                stacklevel=4,
            )
        _set_dotted(tree, new, value)
    for name, value in list(tree.items()):
        sub = _field_class(cls, name) if isinstance(value, Mapping) else None
        if sub is not None:
            tree[name] = migrate(sub, value, source, warn)
    return tree


# ----------------------------------------------------------------------------------------------------------------------
# files and the one layering
# ----------------------------------------------------------------------------------------------------------------------


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file holding a mapping (empty file: ``{}``); a :class:`ConfigError` naming the file otherwise."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"config file {path} does not exist") from e
    except IsADirectoryError as e:
        raise ConfigError(f"config file {path} is a folder, not a YAML file") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not a text file") from e
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{line}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of config keys at the top level")
    return data


def _options_tree(options: Mapping[str, Any]) -> dict[str, Any]:
    """Named options (keys may be dotted) without the ones not given (None)."""
    tree: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        _set_dotted(tree, key, value)
    return tree


def layer_config(
    cls: type[T],
    *,
    config_file: str | Path | Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    sets: Sequence[str] | Mapping[str, Any] = (),
    base: Any = None,
    source: str | None = None,
) -> T:
    """THE config layering of optidel: defaults < ``base`` < ``config_file`` < ``options`` < ``sets``.

    Args:
        cls: a frozen config dataclass.
        config_file: a YAML file of ``cls`` keys, or an already loaded mapping of them (e.g. one stage of a
            benchmark config).
        options: the named command-line options the user gave, as (dotted) config keys; a value of None means
            "not given" and is skipped.
        sets: ``key=value`` overrides (``--set``), or a mapping of them.
        base: starting values below the file (an instance of ``cls`` or a mapping): what a caller such as the
            benchmark runner or ``theory --experiment`` derives for this run.
        source: how to name ``config_file`` in messages when it is a mapping.

    Returns:
        The validated ``cls`` instance.

    Raises:
        ConfigError: one line naming the key (with a close match when there is one) and the layer it came from.
    """
    if base is not None and dataclasses.is_dataclass(base) and not isinstance(base, type):
        base = to_dict(base)
    if isinstance(config_file, Mapping):
        file_layer = (source or "config", dict(config_file))
    elif config_file is not None:
        file_layer = (f"config file {config_file}", load_yaml(config_file))
    else:
        file_layer = ("config", {})
    set_tree = dict(sets) if isinstance(sets, Mapping) else parse_overrides(sets)
    layers = [
        ("base", dict(base or {})),
        file_layer,
        ("options", _options_tree(options or {})),
        ("--set", set_tree),
    ]
    tree: dict[str, Any] = {}
    cfg = None
    for name, layer in layers:
        if not layer and cfg is not None:
            continue
        try:
            tree = merge(tree, migrate(cls, layer, name))
            cfg = from_dict(cls, tree)
        except ConfigError as e:
            raise ConfigError(f"{name}: {e}" if name != "base" else str(e)) from None
    return typing.cast(T, cfg)


def resolve_config(
    cls: type[T],
    yaml_path: str | Path | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    base: Any = None,
) -> T:
    """Defaults < ``base`` < YAML file < ``overrides`` (``key=value`` strings or a mapping): :func:`layer_config`."""
    if isinstance(overrides, Mapping):
        return layer_config(cls, config_file=yaml_path, options=overrides, base=base)
    return layer_config(cls, config_file=yaml_path, sets=list(overrides), base=base)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically). ``path`` may be a run directory or a file."""
    path = Path(path)
    if path.suffix not in (".yaml", ".yml"):
        path = path / "config.yaml"
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def load_config(cls: type[T], path: str | Path) -> T:
    """Read back a ``config.yaml`` written by :func:`save_config` (older key names are mapped silently)."""
    data = migrate(cls, load_yaml(path), f"config file {path}", warn=False)
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"config file {path}: {e}") from None


# ----------------------------------------------------------------------------------------------------------------------
# help texts from the fields
# ----------------------------------------------------------------------------------------------------------------------


def field_default(cls: type, key: str) -> Any:
    """The default value of the (dotted, possibly renamed) field ``key`` of ``cls``."""
    obj: Any = cls()
    for part in canonical_key(cls, key).split("."):
        if not hasattr(obj, part):
            raise KeyError(f"{cls.__name__} has no config key {key!r}")
        obj = getattr(obj, part)
    return obj


def format_value(value: Any) -> str:
    """A default as a user types it: ``0.001``, ``true``, ``a,b``, ``none``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return ",".join(format_value(v) for v in value) if value else "none"
    return str(value)


def default_help(cls: type, key: str, none: str | None = None) -> str:
    """``\\[default: X]`` for a help text, X read from the field (``none``: what a None default means)."""
    value = field_default(cls, key)
    text = none if value is None and none is not None else format_value(value)
    return f"\\[default: {text}]"
