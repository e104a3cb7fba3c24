"""The runtime's own small JSON files under `root_dir` (the package docstring lists them), written atomically.

containerd is the source of truth for containers; these files only hold what it does not keep (a
sandbox's config, netns, IP and CNI config; a container's start time), so a new runtime instance with
the same root dir rediscovers everything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _atomic_write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=1, sort_keys=True))
    temporary.replace(path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
