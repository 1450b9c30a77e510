"""Read a YAML file into :class:`~edge.config.model.Config`, with every error located.

Each problem becomes one line ``FILE:LINE: key.path: message``. Relative paths in the
file are taken relative to the file's own directory, so a config works from any cwd.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import yaml
from pydantic import ValidationError

from edge.config.messages import explain
from edge.config.model import Config
from edge.errors import ConfigError

# Keys whose values are paths, relative to the config file's directory when not absolute.
_PATH_KEYS = {
    ("model", "path"),
    ("model", "labels"),
    ("state_dir",),
    ("backend", "tensorrt", "engine_dir"),
    ("backend", "tensorrt", "calibration_cache"),
    ("backend", "tensorrt", "qdq_model"),
    ("mqtt", "tls", "ca_file"),
    ("mqtt", "tls", "cert_file"),
    ("mqtt", "tls", "key_file"),
    ("mqtt", "outbox", "path"),
    ("mqtt", "password", "file"),
}
_CAMERA_PATH_KEYS = {("source", "path"), ("source", "password", "file")}

Loc = Tuple[Union[str, int], ...]


class _Located:
    """The YAML node tree, to find the line of a key path."""

    def __init__(self, root: Optional[yaml.Node]) -> None:
        self.root = root

    def line(self, loc: Loc) -> Optional[int]:
        """Line of the deepest key (or list item) of ``loc`` present in the file."""
        node = self.root
        best = node.start_mark.line + 1 if node is not None else None
        for part in loc:
            found = self._child(node, part)
            if found is None:
                break
            marker, node = found
            best = marker.start_mark.line + 1
        return best

    @staticmethod
    def _child(node: Optional[yaml.Node], part: Union[str, int]) -> Optional[Tuple[yaml.Node, yaml.Node]]:
        """(node whose line to report, node to descend into) for one step of a key path."""
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    return key, value  # the key's line, also for values spanning several lines
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            return node.value[part], node.value[part]
        return None

    def duplicates(self) -> List[Tuple[Loc, int]]:
        """Keys given twice in one mapping (YAML keeps the last silently): (path, line of the repeat)."""
        found: List[Tuple[Loc, int]] = []

        def walk(node: Optional[yaml.Node], loc: Loc) -> None:
            if isinstance(node, yaml.MappingNode):
                seen = set()
                for key, value in node.value:
                    k = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
                    if k in seen:
                        found.append(((*loc, k), key.start_mark.line + 1))
                    seen.add(k)
                    walk(value, (*loc, k))
            elif isinstance(node, yaml.SequenceNode):
                for i, item in enumerate(node.value):
                    walk(item, (*loc, i))

        walk(self.root, ())
        return found


class ConfigProblems(ConfigError):
    """Every problem found in one file; ``str()`` is one line each."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = list(lines)
        super().__init__("; ".join(self.lines) if len(self.lines) == 1 else f"{len(self.lines)} problems")

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _resolve_paths(data: Any, base: Path) -> None:
    if not isinstance(data, dict):
        return

    def fix(mapping: Any, keys: Tuple[str, ...]) -> None:
        for k in keys[:-1]:
            if not isinstance(mapping, dict):
                return
            mapping = mapping.get(k)
        if isinstance(mapping, dict):
            v = mapping.get(keys[-1])
            if isinstance(v, str) and v and v != "coco":
                v = os.path.expanduser(v)
                mapping[keys[-1]] = v if Path(v).is_absolute() else str(base / v)

    for keys in _PATH_KEYS:
        fix(data, keys)
    cams = data.get("cameras")
    if isinstance(cams, list):
        for cam in cams:
            for keys in _CAMERA_PATH_KEYS:
                fix(cam, keys)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(data: Any, loc: Loc, problems: List[Tuple[Loc, str]]) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in string values with environment variables."""
    if isinstance(data, dict):
        return {k: _expand_env(v, (*loc, str(k)), problems) for k, v in data.items()}
    if isinstance(data, list):
        return [_expand_env(v, (*loc, i), problems) for i, v in enumerate(data)]
    if not isinstance(data, str) or "${" not in data:
        return data

    def sub(m: Any) -> str:
        value = os.environ.get(m.group(1))
        if value is None:
            if m.group(2) is None:
                name = m.group(1)
                problems.append((loc, f"environment variable {name} is not set (or write ${{{name}:-default}})"))
                return ""
            return m.group(2)
        return value

    return _VAR.sub(sub, data)


def _format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def parse_config(text: str, source: str = "<config>", base_dir: Optional[Path] = None) -> Config:
    """Validate YAML text; raise :class:`ConfigProblems` listing every problem with its line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigProblems([f"{where}: not valid YAML: {problem}"]) from None
    if data is None:
        raise ConfigProblems([f"{source}: the file is empty"])
    if not isinstance(data, dict):
        raise ConfigProblems([f"{source}:1: the top level must be a mapping of keys"])
    located = _Located(node)
    dups = located.duplicates()
    if dups:
        raise ConfigProblems(
            [f"{source}:{line}: {_format_loc(loc)}: key given twice (YAML would keep the last)" for loc, line in dups]
        )
    env_problems: List[Tuple[Loc, str]] = []
    data = _expand_env(data, (), env_problems)
    if env_problems:
        raise ConfigProblems(
            [f"{source}:{located.line(loc) or 1}: {_format_loc(loc)}: {msg}" for loc, msg in env_problems]
        )
    _resolve_paths(data, base_dir or Path.cwd())
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        found = []
        for loc, msg in explain(exc.errors(), data):
            line = located.line(loc)
            where = f"{source}:{line}" if line else source
            found.append((line or 0, f"{where}: {_format_loc(loc)}: {msg}"))
        found.sort(key=lambda f: f[0])  # in file order (stable for problems on one line)
        raise ConfigProblems([line for _, line in found]) from None


def load_config(path: Union[str, Path]) -> Config:
    """Read and validate a config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigProblems([f"{p}: config file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigProblems([f"{p}: cannot read the config file: {exc}"]) from None
    return parse_config(text, str(p), p.resolve().parent)
