"""The committed proto stubs are exactly what proto/generate.py makes from the committed .proto files, with the
grpcio-tools that requirements-test.lock pins (tests/unit/test_lock.py checks that it is the one installed)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from kybernetes.proto.generate import ROOT, generate

PROTO_DIR = ROOT / "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
REGENERATE = "regenerate with `.venv/bin/python -m kybernetes.proto.generate` (./deploy/test.sh makes .venv)"


def _stubs(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}


def test_committed_stubs_match_regenerated(tmp_path: Path) -> None:
    generate(tmp_path)
    fresh = _stubs(tmp_path / "proto")
    assert fresh, "generate() produced no stubs"
    committed = _stubs(PROTO_DIR)
    tools = metadata.version("grpcio-tools")
    missing = sorted(set(fresh) - set(committed))
    assert not missing, f"stubs not committed ({REGENERATE}): {missing}"
    stale = sorted(name for name, data in fresh.items() if committed[name] != data)
    assert not stale, f"stubs differ from what grpcio-tools {tools} makes ({REGENERATE}): {stale}"


def test_every_committed_stub_has_a_source() -> None:
    sources = {p.stem for p in PROTO_DIR.glob("*.proto")}
    orphans = sorted(name for name in _stubs(PROTO_DIR) if name.split("_pb2", 1)[0] not in sources)
    assert not orphans, f"generated stubs whose .proto is gone (delete them): {orphans}"
