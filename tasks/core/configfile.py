"""Reading an experiment config file safely, before the schema sees it.

YAML is read with a SafeLoader (no Python tags) that also refuses duplicate keys, and within bounds far
above any real config and far below what would cost time or memory: the file's size, how deep values
nest, and how many values the document holds once every alias is expanded (a 1 KB "billion laughs"
expands to 10^9 values). Values quoted in error messages are shortened.
"""

from __future__ import annotations

import reprlib
import stat
from pathlib import Path
from typing import Any

import yaml

from tasks.core.errors import ConfigError

# A config is a few hundred bytes and a few hundred values; these bounds are far above any real one and
# far below what would cost time or memory (a 1 KB "billion laughs" expands to 10^9 values by aliases).
MAX_CONFIG_BYTES = 256 * 1024
MAX_CONFIG_VALUES = 10_000  # every scalar, list and mapping, each alias counted as the whole value it repeats
MAX_CONFIG_DEPTH = 50

_QUOTE = reprlib.Repr()
_QUOTE.maxlevel, _QUOTE.maxlist, _QUOTE.maxdict, _QUOTE.maxtuple = 2, 6, 6, 6
_QUOTE.maxstring, _QUOTE.maxother, _QUOTE.maxlong = 60, 60, 40


def quote_value(value: Any) -> str:
    """A short repr of `value` for an error message: never the whole of a huge or deeply nested value."""
    text = _QUOTE.repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


class _ConfigTooBig(yaml.YAMLError):
    """The document nests or expands beyond the bounds a config ever needs."""

    def __init__(self, problem: str, mark: yaml.Mark | None):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (PyYAML silently keeps the last), and a
    document that nests deeper than MAX_CONFIG_DEPTH or expands through aliases beyond MAX_CONFIG_VALUES."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_CONFIG_DEPTH:
                raise _ConfigTooBig(
                    f"values nested more than {MAX_CONFIG_DEPTH} deep; a config needs a few levels",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node):
        _check_expansion(node)  # before anything is built: composing shares aliased nodes, building may not
        return super().construct_document(node)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph whose values, each alias expanded, exceed MAX_CONFIG_VALUES, or that loops."""
    sizes: dict[int, int] = {}  # expanded size of each finished node, by id: shared nodes are sized once
    open_nodes: set[int] = set()  # nodes whose children are being sized: meeting one again is a loop
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if children_done:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > MAX_CONFIG_VALUES:
                raise _ConfigTooBig(
                    f"its aliases expand to more than {MAX_CONFIG_VALUES:,} values (an alias bomb?); "
                    "a config needs far fewer: write the values out",
                    node.start_mark,
                )
            continue
        if id(node) in sizes:
            continue
        open_nodes.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise _ConfigTooBig("an alias refers to a value that contains it (a recursive alias)", child.start_mark)
            stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {quote_value(key)} (first on line {seen[key]})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


_NOT_FILES = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def _check_is_file(config_path: Path) -> None:
    """A ConfigError unless `config_path` is a regular file (or a link to one): saying what it is instead."""
    hint = "pass --config with the path of an experiment YAML such as configs/default.yaml"
    try:
        mode = config_path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"config file {config_path} not found; {hint}") from None
    except OSError as exc:
        raise ConfigError(f"config file {config_path} cannot be read ({exc.strerror or exc}); {hint}") from None
    if not stat.S_ISREG(mode):
        found = next((name for test, name in _NOT_FILES if test(mode)), "a device or other special file")
        raise ConfigError(f"config file {config_path}: expected a YAML file, found {found}; {hint}")


def read_config_yaml(path: str | Path) -> Any:
    """The YAML document of a config file, within the bounds above; every problem is a ConfigError."""
    config_path = Path(path)
    _check_is_file(config_path)
    try:
        with open(config_path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
        text = data.decode("utf-8")
    except OSError as exc:
        raise ConfigError(
            f"config file {config_path} cannot be read ({exc.strerror or exc}); fix its permissions"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{config_path}: expected UTF-8 text, found byte {data[exc.start]:#04x} at offset {exc.start}"
        ) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{config_path}: expected an experiment config of at most {MAX_CONFIG_BYTES:,} bytes, found more than "
            f"{MAX_CONFIG_BYTES:,} bytes; is it the right file?"
        )
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _ConfigTooBig as exc:
        mark = exc.problem_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        raise ConfigError(f"{config_path}:{where} refused: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{config_path}:{where}: YAML syntax error: {problem}") from exc
    return raw
