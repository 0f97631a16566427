"""The checksums a raw file must match: Fashion-MNIST's published ones, or a site's own table."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tasks.core.errors import ConfigError
from tasks.data.dataset import RAW_FILES

SHA256 = re.compile(r"[0-9a-f]{64}")
MD5 = re.compile(r"[0-9a-f]{32}")


def published_checksums(name: str, override: str = "") -> tuple[str, str | None]:
    """(payload sha256, upstream gz md5 or None) that raw file `name` must match: the published values, or
    those of the JSON file `override` (tests, mirrors of other data)."""
    if not override:
        raw = RAW_FILES[name]
        return raw.payload_sha256, raw.upstream_gz_md5
    path = Path(override)
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        payload_sha256, gz_md5 = table[name]["payload_sha256"], table[name].get("gz_md5")
        if not SHA256.fullmatch(str(payload_sha256)) or not (gz_md5 is None or MD5.fullmatch(str(gz_md5))):
            raise ValueError(f"expected 64 hex digits (and 32 for gz_md5), found {str(payload_sha256)[:80]!r}")
        return payload_sha256, gz_md5
    except FileNotFoundError:
        raise ConfigError(f"[pipeline] checksums_file: {path} not found; fix the path or remove the setting") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"[pipeline] checksums_file: {path} must be JSON of the form "
            f'{{"<file name>": {{"payload_sha256": "<hex>"}}}} with an entry for {name}; found a problem: {exc!r}'
        ) from None
