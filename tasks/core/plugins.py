"""Optimizer plugins: what installed distributions declare in the entry-point group `fmnist_pipeline.optimizers`.

An entry point's name is the optimizer's name in configs; its value points at a callable
`factory(learning_rate, *, hp=default, ...)` that returns a `tf.compat.v1.train.Optimizer`. The keyword-only
parameters with defaults are the hyper-parameters (tasks.core.registry checks them like a built-in's).
Listing the entry points reads only metadata; `load` imports the plugin's module, which the registry does
only when a config names the plugin. A plugin is code that runs in this process, like any installed package.

A plugin's identity is its distribution's name and version and the sha256 of its source: the files of the
top-level package (or module) its entry point lives in, so editing the plugin reruns its runs alone.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import sys
import traceback
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

GROUP = "fmnist_pipeline.optimizers"
log = logging.getLogger(__name__)
IMPORTED_SHA256 = "__fmnist_pipeline_source_sha256__"  # set on a plugin's module when it is first loaded

_declared_cache: dict[tuple[str, ...], dict[str, list[EntryPoint]]] = {}


def declared() -> dict[str, list[EntryPoint]]:
    """Entry-point name → the entry points of that name (more than one: a clash), for the current sys.path."""
    key = tuple(sys.path)
    if key not in _declared_cache:
        found: dict[str, list[EntryPoint]] = {}
        for point in entry_points(group=GROUP):
            if all(distribution_name(other) != distribution_name(point) for other in found.get(point.name, [])):
                found.setdefault(point.name, []).append(point)
        _declared_cache[key] = found
    return _declared_cache[key]


def distribution_name(point: EntryPoint) -> str:
    return point.dist.name if point.dist is not None else "<unknown distribution>"


def forget() -> None:
    """Drop what `declared` remembers (after installing or removing a plugin in this process)."""
    _declared_cache.clear()


def top_level(point: EntryPoint) -> str:
    return point.module.split(".")[0]


def source_files(point: EntryPoint) -> tuple[Path, list[Path]]:
    """(root, files): the top-level package's folder and its files (no bytecode), or a module's folder and file."""
    spec = importlib.util.find_spec(top_level(point))  # a top-level name: nothing is imported
    if spec is None or not (spec.submodule_search_locations or spec.origin):
        return Path("."), []
    if spec.submodule_search_locations:
        root = Path(list(spec.submodule_search_locations)[0])
        files = [
            path
            for path in root.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
        ]
        return root, sorted(files)
    origin = Path(spec.origin)
    return origin.parent, [origin]


def source_sha256(point: EntryPoint) -> str:
    """sha256 over each source file's path (relative to its package folder) and content."""
    digest = hashlib.sha256()
    root, files = source_files(point)
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def module_file(point: EntryPoint) -> str:
    """The file of the entry point's module, found without importing it (for error messages)."""
    try:
        spec = importlib.util.find_spec(point.module)
    except Exception:  # a parent package that fails to import: name the top-level package instead
        spec = importlib.util.find_spec(top_level(point))
    return str(spec.origin) if spec is not None and spec.origin else f"<module {point.module} not found>"


def load(name: str, points: list[EntryPoint], make_param: Callable[[Any], Any]):
    """The registry's OptimizerKind of plugin `name`: imports its module and reads the factory's signature.

    ValueError (naming plugin, distribution and file) for a clash between distributions or a factory whose
    signature is not `factory(learning_rate, *, hp=number, ...)`. A module that fails to import gives a
    broken kind (`_broken_kind`): its runs fail with the import error, the config's others run.
    """
    from tasks.core.registry import OptimizerKind

    if len(points) > 1:
        raise ValueError(
            f"optimizer plugin {name!r} is declared by more than one distribution: "
            f"{', '.join(sorted(distribution_name(point) for point in points))}; uninstall all but one"
        )
    point = points[0]
    distribution = distribution_name(point)
    version = point.dist.version if point.dist is not None else "0"
    where = f"optimizer plugin {name!r} (distribution {distribution} {version}, entry point {point.value}"
    try:
        factory = point.load()
    except Exception as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        in_plugin = [frame for frame in frames if "importlib" not in frame.filename]
        failed_at = in_plugin[-1] if in_plugin else None
        at = f"{failed_at.filename}, line {failed_at.lineno}" if failed_at else module_file(point)
        message = (
            f"{where}, {module_file(point)}) failed to import: {type(exc).__name__}: {exc} (at {at}); "
            f"fix the plugin or uninstall {distribution}"
        )
        return _broken_kind(name, point, distribution, version, message)
    digest = source_sha256(point)
    # The code this process runs is the code it imported: remember its hash on the module, the first time.
    module = sys.modules.get(point.module)
    imported = getattr(module, IMPORTED_SHA256, None) if module is not None else digest
    if module is not None and imported is None:
        setattr(module, IMPORTED_SHA256, digest)
        imported = digest
    file = _factory_file(factory) or module_file(point)
    where += f", {file})"
    params = _signature_params(factory, where, make_param)
    return OptimizerKind(
        **_identity(name, point, distribution, version, digest),
        params=params,
        source_file=file,
        imported_sha256=imported,
    )


def _identity(name: str, point: EntryPoint, distribution: str, version: str, digest: str) -> dict[str, str]:
    """The OptimizerKind fields every plugin kind has, loaded or broken."""
    return {
        "name": name,
        "factory": point.value,
        "distribution": distribution,
        "version": version,
        "source_sha256": digest,
    }


_warned: set[str] = set()


def _broken_kind(name: str, point: EntryPoint, distribution: str, version: str, message: str):
    """A plugin that fails to import: still an optimizer a config may name, with its identity (read from
    metadata and source files, no import needed), whose runs are recorded as failed with `message`
    (tasks.core.errors.PluginFault) while the config's other runs go on. Its hyper-parameters cannot be
    read, so a config's `params` for it are checked only as finite numbers. Warned once per process."""
    from tasks.core.registry import OptimizerKind

    if message not in _warned:
        _warned.add(message)
        log.warning("%s; its runs will be recorded as failed", message)
    digest = source_sha256(point)
    return OptimizerKind(
        **_identity(name, point, distribution, version, digest),
        params=None,
        source_file=module_file(point),
        imported_sha256=digest,
        broken=message,
    )


def _factory_file(factory: Any) -> str | None:
    try:
        return inspect.getsourcefile(factory)
    except TypeError:
        return None


def _signature_params(factory: Any, where: str, make_param: Callable[[Any], Any]) -> dict[str, Any]:
    if not callable(factory):
        raise ValueError(f"{where}: expected a callable factory(learning_rate, *, ...), found {type(factory).__name__}")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: its factory's signature cannot be read ({exc})") from None
    parameters = list(signature.parameters.values())
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not positional or any(p.default is p.empty for p in positional[1:]):
        raise ValueError(
            f"{where}: expected factory(learning_rate, *, hp=default, ...): one positional parameter, the learning "
            f"rate, found {signature}"
        )
    params = {}
    for parameter in parameters:
        if parameter.kind is not parameter.KEYWORD_ONLY:
            continue
        param = None if parameter.default is parameter.empty else make_param(parameter.default)
        if param is None:
            found = "no default" if parameter.default is parameter.empty else f"default {parameter.default!r}"
            raise ValueError(
                f"{where}: keyword-only parameter {parameter.name!r} has {found}; a hyper-parameter needs a finite "
                "int or float default"
            )
        params[parameter.name] = param
    return params


def load_factory(reference: str) -> Callable[..., Any]:
    """The callable named 'module:attribute' (a built-in's or a loaded plugin's factory)."""
    module, _, attribute = reference.partition(":")
    value: Any = importlib.import_module(module)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value
