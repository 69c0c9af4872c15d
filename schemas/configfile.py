"""Load YAML or JSON configuration into a pydantic model, with errors that name file, line and field.

A plant engineer editing a file on a gateway needs ``site.yaml:14: sources[0].channels[2].unit: ...``,
not a traceback. PyYAML keeps node positions in its composed tree; pydantic reports error locations
as paths; this module joins the two. Duplicate mapping keys, which PyYAML would silently collapse to
the last one, are errors too.

Settings models (pydantic-settings ``BaseSettings`` with an ``env_prefix``) also take the environment, over
what the file says: ``CEMS_STREAM__KAFKA__SASL_PASSWORD=...`` sets ``kafka.sasl_password``. That keeps secrets
out of files (systemd ``EnvironmentFile``, container secrets) and lets a worker run from the environment alone.
The overlay is pydantic-settings' own; :func:`load_settings` only reads the file and names, for each problem,
the file's line or the variable the value came from. A complex value (``[...]``, ``{...}``) is read as YAML.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError, Location, field_path, validation_problems

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

__all__ = ["line_of", "load_config", "load_settings", "parse_config", "yaml_env_first"]

M = TypeVar("M", bound=BaseModel)
#: Checks across fields: the parsed model -> further ``(location, message)`` problems.
Checks = Callable[[Any], Iterable[tuple[Location, str]]]


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def line_of(root: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
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


def yaml_env_first(cls: type[BaseSettings], settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
    """``settings_customise_sources`` of the project's settings models: the environment over the file's values (the
    init arguments), with complex values read as YAML (a YAML list is what an operator types: ``[a, b]``)."""
    from pydantic_settings import EnvSettingsSource

    class _YamlEnv(EnvSettingsSource):
        def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
            return yaml.safe_load(value)

    return _YamlEnv(settings_cls, case_sensitive=False), init_settings


def _env_paths(prefix: str, environ: Mapping[str, str] | None = None) -> dict[tuple[str, ...], str]:
    """Field paths set by ``PREFIX_A__B`` variables -> the variable's name (to say where a bad value came from)."""
    return {tuple(part.lower() for part in name[len(prefix):].split("__")): name
            for name in sorted(os.environ if environ is None else environ)
            if name.upper().startswith(prefix.upper()) and len(name) > len(prefix)}


def _env_prefix(model: type[BaseModel]) -> str | None:
    """The environment prefix of a settings model (pydantic-settings), None for a plain model."""
    prefix = getattr(model, "model_config", {}).get("env_prefix")
    return str(prefix) if prefix else None


def _read_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """The data of YAML/JSON ``text`` (duplicate keys refused) and its node tree (for lines)."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)
        return data, yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{at}: YAML syntax error: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: YAML error: {exc}") from None


def parse_config(text: str, model: type[M], source: str = "<string>", checks: Checks | None = None) -> M:
    """Parse YAML/JSON ``text`` into ``model``; raise :class:`ConfigError` listing every problem.

    ``checks(obj)`` may return further ``(location, message)`` problems found across fields (for
    example against another section of the file); they are reported with lines like schema errors.
    A settings model (pydantic-settings, with an ``env_prefix``) takes its environment over the text, and a
    problem in a value from the environment names the variable.
    """
    prefix = _env_prefix(model)
    data, root = _read_yaml(text, source)
    if data is None and prefix:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: expected a mapping at the top level, got {type(data).__name__}")
    try:
        obj = model(**data) if prefix else model.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(exc)
    else:
        problems = list(checks(obj)) if checks else []
        if not problems:
            return obj
    from_env = _env_paths(prefix) if prefix else {}

    def where(loc: Location) -> str:
        names = tuple(str(p).lower() for p in loc)
        for path, variable in from_env.items():
            if names[: len(path)] == path:
                return f"environment {variable}"
        return f"{source}:{line_of(root, loc) or '?'}"

    raise ConfigError("\n".join(f"{where(loc)}: {field_path(loc)}: {msg}" for loc, msg in problems)) from None


def load_config(path: str | Path | None, model: type[M], checks: Checks | None = None) -> M:
    """Read ``path`` (YAML or JSON) into ``model``; errors name the file, line and field. A settings model takes the
    environment over the file, and ``path=None`` reads the environment alone."""
    if path is None:
        if not _env_prefix(model):
            raise ValueError(f"{model.__name__} is not a settings model: give a file")
        return parse_config("", model, "(environment)", checks)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_config(text, model, str(path), checks)


#: A settings file and its environment (the same reader: the name says which kind of model it is for).
load_settings = load_config
