"""Reading `-f FILE|DIR|-` arguments into objects, for apply, create and delete.

Every file is read and every document converted before anything is sent, so a
bad manifest aborts the command with one line naming the file and the problem
and nothing half-applied.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kybernetes.core.api import manifest
from kybernetes.core.api.kinds import ApiObject, Kind
from kybernetes.ctl.cli.errors import one_line, usage_error

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True, slots=True)
class Manifest:
    """One object from a file: where it came from, its registry row and the converted object."""

    source: str
    kind: Kind
    obj: ApiObject

    @property
    def name(self) -> str:
        return self.obj.metadata.name

    @property
    def namespace(self) -> str:
        return self.obj.metadata.namespace


def expand_paths(paths: Sequence[str], *, recursive: bool = False) -> list[str]:
    """Files named by -f: a file as is, a directory's manifests sorted by name (descending with -R), '-' stdin."""
    out: list[str] = []
    for raw in paths:
        if raw == "-":
            out.append(raw)
            continue
        path = Path(raw)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            out.extend(str(p) for p in sorted(path.glob(pattern)) if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
        elif path.exists():
            out.append(raw)
        else:
            raise usage_error(f'the path "{raw}" does not exist')
    return out


def _read(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise usage_error(f"error reading {source}: {one_line(str(err))}") from None


def convert(doc: dict[str, Any], *, source: str) -> Manifest:
    """One manifest dict as an object; CliError in kubectl's words when it cannot be one."""
    try:
        kind = manifest.kind_for(doc)
    except manifest.ManifestError as err:
        text = str(err)
        if text.startswith("no matches for kind"):
            found = doc.get("metadata") if doc else None
            metadata: dict[str, Any] = found if isinstance(found, dict) else {}
            raise usage_error(f'resource mapping not found for name: "{metadata.get("name", "")}" namespace: '
                              f'"{metadata.get("namespace", "")}" from "{source}": {text}') from None
        raise usage_error(f'error validating "{source}": error validating data: {text}') from None
    try:
        obj = manifest.to_proto(doc)
    except manifest.ManifestError as err:
        raise usage_error(f'error validating "{source}": {one_line(str(err))}') from None
    return Manifest(source, kind, obj)


def load_manifests(paths: Sequence[str], *, recursive: bool = False) -> list[Manifest]:
    """Every object in the files (and directories, and stdin) named by -f, in order."""
    out: list[Manifest] = []
    for source in expand_paths(paths, recursive=recursive):
        try:
            docs = manifest.load_documents(_read(source))
        except manifest.ManifestError as err:
            raise usage_error(f"error parsing {source}: {one_line(str(err))}") from None
        out.extend(convert(doc, source=source) for doc in docs)
    return out
