"""Load YAML or JSON configuration into a pydantic model, with errors that name file, line and field.

A plant engineer editing a file on a gateway needs ``site.yaml:14: sources[0].channels[2].unit: ...``,
not a traceback. PyYAML keeps node positions in its composed tree; pydantic reports error locations
as paths; this module joins the two. Duplicate mapping keys, which PyYAML would silently collapse to
the last one, are errors too.

Settings can also come from the environment (``env_prefix``): ``CEMS_STREAM__KAFKA__SASL_PASSWORD=...``
sets ``kafka.sasl_password``, over what the file says. That keeps secrets out of files (systemd
``EnvironmentFile``, container secrets) and lets a worker run from the environment alone. Values are
strings (pydantic converts numbers and booleans); a value starting with ``[`` or ``{`` is parsed as YAML.
Errors in such a setting name the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import os

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError

__all__ = ["load_config", "parse_config"]

M = TypeVar("M", bound=BaseModel)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _line_of(root: yaml.Node | None, loc: tuple) -> int | None:
    """1-based line of the deepest node along a pydantic error location."""
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def env_settings(prefix: str, environ=None) -> dict[tuple[str, ...], object]:
    """``PREFIX_A__B=v`` variables -> ``{("a", "b"): v}``."""
    out = {}
    for name, value in sorted((os.environ if environ is None else environ).items()):
        if name.startswith(prefix) and len(name) > len(prefix):
            path = tuple(part.lower() for part in name[len(prefix):].split("__"))
            out[path] = yaml.safe_load(value) if value.lstrip()[:1] in ("[", "{") else value
    return out


def _apply(data: dict, settings: dict[tuple[str, ...], object], prefix: str) -> None:
    for path, value in settings.items():
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{prefix}{'__'.join(path).upper()}: {'.'.join(path[:-1])} is not a section")
            node = child
        node[path[-1]] = value


def parse_config(text: str, model: type[M], source: str = "<string>", checks=None, env_prefix: str | None = None,
                 environ=None) -> M:
    """Parse YAML/JSON ``text`` into ``model``; raise :class:`ConfigError` listing every problem.

    ``checks(obj)`` may return further ``(location, message)`` problems found across fields (for
    example against another section of the file); they are reported with lines like schema errors.
    ``env_prefix``: settings from the environment override the text (see the module docstring).
    """
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{where}: YAML syntax error: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: YAML error: {exc}") from None
    if data is None and env_prefix:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: expected a mapping at the top level, got {type(data).__name__}")
    from_env = env_settings(env_prefix, environ) if env_prefix else {}
    _apply(data, from_env, env_prefix or "")
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        problems = [(err["loc"], err["msg"].removeprefix("Value error, ")) for err in exc.errors(include_url=False)]
    else:
        problems = list(checks(obj)) if checks else []
        if not problems:
            return obj
    def where(loc: tuple) -> str:
        names = tuple(str(p) for p in loc)
        for path in from_env:
            if names[: len(path)] == path:
                return f"environment {env_prefix}{'__'.join(path).upper()}"
        return f"{source}:{_line_of(root, loc) or '?'}"

    lines = [f"{where(loc)}: {_field_path(loc)}: {msg}" for loc, msg in problems]
    raise ConfigError("\n".join(lines)) from None


def load_config(path: str | Path | None, model: type[M], checks=None, env_prefix: str | None = None) -> M:
    """Read ``path`` (YAML or JSON) into ``model``; errors name the file, line and field. With ``env_prefix``
    the environment overrides the file, and ``path=None`` reads the environment alone."""
    if path is None:
        if not env_prefix:
            raise ValueError("without a file, settings come from the environment: give env_prefix")
        return parse_config("", model, "(environment)", checks, env_prefix)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_config(text, model, str(path), checks, env_prefix)
