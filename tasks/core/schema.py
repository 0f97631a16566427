"""The strict base of every typed schema (configs, run settings): frozen, no extra keys, no coercion.

`parse` turns JSON text or a mapping into the model, or a ConfigError that names each wrong key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from tasks.core.errors import ConfigError

MAX_STEPS = 10_000_000  # the most optimizer steps a budget or a schedule may name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    _parse_hint: ClassVar[str] = "check it against the config schema (tasks/core/config.py)"

    @classmethod
    def parse(cls: type[_Parsed], data: str | Mapping[str, Any], source: str = "settings") -> _Parsed:
        """Validate data given as JSON text or a mapping; a ConfigError names what is wrong."""
        try:
            return cls.model_validate(json.loads(data) if isinstance(data, str) else plain(data))
        except (ValueError, TypeError, ValidationError) as exc:
            problems = exc.errors() if isinstance(exc, ValidationError) else [{"loc": (), "msg": str(exc)}]
            detail = "; ".join(
                f"{'.'.join(str(part) for part in problem['loc']) or '(top level)'}: {problem['msg']}"
                for problem in problems[:5]
            )
            raise ConfigError(f"{source}: not valid {cls.__name__} ({detail[:500]}); {cls._parse_hint}") from None


_Parsed = TypeVar("_Parsed", bound=_Strict)


def plain(data: Any) -> Any:
    """Luigi's frozen mappings and tuples as plain dicts and lists."""
    if isinstance(data, Mapping):
        return {key: plain(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [plain(value) for value in data]
    return data
