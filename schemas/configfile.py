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
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError, Location, field_path, validation_problems

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

__all__ = ["MAX_CONFIG_BYTES", "field_of", "line_in_file", "line_of", "load_config", "load_settings", "parse_config",
           "yaml_env_first"]

#: Largest configuration file read [bytes] (of text: characters). The site file of a large steel works (a hundred
#: sources of twenty channels) is about 200 kB; a file twenty times that is not a configuration file, and refusing
#: it at once says so where loading it would take tens of seconds and hundreds of MB.
MAX_CONFIG_BYTES = 4 * 1024 * 1024

M = TypeVar("M", bound=BaseModel)
#: Checks across fields: the parsed model -> further ``(location, message)`` problems.
Checks = Callable[[Any], Iterable[tuple[Location, str]]]


#: libyaml's parser where PyYAML was built with it (the wheels are): the pure-Python one takes about a minute for a
#: 5 MB file, libyaml about a second. Construction (duplicate keys, the Python objects) stays PyYAML's own.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_Loader):  # type: ignore[valid-type,misc]
    """SafeLoader that refuses duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable) or not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain value (a name), not a list or a mapping", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return cast(dict[Hashable, Any], super().construct_mapping(node, deep=deep))


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


def line_in_file(path: str | Path, loc: Sequence[str | int]) -> int | None:
    """The line of ``loc`` in the YAML/JSON file ``path`` (a file that loaded), None if it cannot be told."""
    try:
        return line_of(yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=_Loader), loc)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return None


def _node_at(root: yaml.Node | None, loc: Sequence[str | int]) -> yaml.Node | None:
    """The node at a pydantic error location, None where the document has none (a missing field)."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            return None
    return node


def field_of(root: yaml.Node | None, loc: Location, message: str) -> Location:
    """``loc`` taken down to the field a problem is about. A check across fields (a model validator) reports at the
    object (``devices[0]``), whose line is the object's first; when its message starts with a field of that object
    (``mode SignAndEncrypt needs a policy``, ``ambient_pressure.channel 'p' is not ...``), the problem is at that
    field, on its own line."""
    node, out = _node_at(root, loc), tuple(loc)
    first = re.match(r"[A-Za-z_][\w.]*(\[\d+\])*(\.[A-Za-z_]\w*(\[\d+\])*)*", message)
    path: list[str | int] = []
    for token in first.group(0).split(".") if first else ():
        name, *indices = token.replace("]", "").split("[")
        path += [name, *map(int, indices)]
    for part in path:
        found = _node_at(node, (part,))
        if found is None:
            break
        node, out = found, (*out, part)
    return out


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


def _too_large(source: str, size: str) -> str:
    return (f"{source}: {size}, more than a configuration file may have ({MAX_CONFIG_BYTES:,} bytes); one site file "
            f"holds one entity")


def _read_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """The data of YAML/JSON ``text`` (duplicate keys refused) and its node tree (for lines): parsed once, the data
    constructed from the tree."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(_too_large(source, f"{len(text):,} characters"))
    loader = _StrictLoader(text)
    try:
        root = loader.get_single_node()
        return (loader.construct_document(root) if root is not None else None), root
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{at}: YAML syntax error: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: YAML error: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a configuration file") from None
    finally:
        loader.dispose()


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
    if prefix and not all(isinstance(k, str) for k in data):  # settings models take the keys as keyword arguments
        bad = next(k for k in data if not isinstance(k, str))
        raise ConfigError(f"{source}:{line_of(root, ()) or 1}: {bad!r}: a top-level key must be a name")
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

    located = [(field_of(root, loc, msg), msg) for loc, msg in problems]
    raise ConfigError("\n".join(f"{where(loc)}: {field_path(loc)}: {msg}" for loc, msg in located)) from None


def load_config(path: str | Path | None, model: type[M], checks: Checks | None = None) -> M:
    """Read ``path`` (YAML or JSON) into ``model``; errors name the file, line and field. A settings model takes the
    environment over the file, and ``path=None`` reads the environment alone."""
    if path is None:
        if not _env_prefix(model):
            raise ValueError(f"{model.__name__} is not a settings model: give a file")
        return parse_config("", model, "(environment)", checks)
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(_too_large(str(path), f"{size:,} bytes"))
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_config(text, model, str(path), checks)


#: A settings file and its environment (the same reader: the name says which kind of model it is for).
load_settings = load_config
