"""Regenerate the Python stubs from proto/*.proto (`python -m kybernetes.proto.generate [OUT_DIR]`).

The wheel installs this folder as `kybernetes.proto`, so the stubs must import each other by that name:
protoc is run on copies of the .proto files laid out as `kybernetes/proto/*.proto` (the path the sources
import each other by), and the stubs it writes there are moved to OUT_DIR/proto/.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_PATH = Path("kybernetes") / "proto"


def generate(out_dir: Path = ROOT) -> None:
    """Write the stubs for every .proto under proto/ into out_dir/proto/."""
    (out_dir / "proto").mkdir(parents=True, exist_ok=True)
    include = str(Path(protoc.__file__).parent / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        staged, built = Path(tmp) / "src", Path(tmp) / "out"
        (staged / PACKAGE_PATH).mkdir(parents=True)
        built.mkdir()
        for source in sorted((ROOT / "proto").glob("*.proto")):
            shutil.copy2(source, staged / PACKAGE_PATH / source.name)
        sources = sorted(str(PACKAGE_PATH / p.name) for p in (staged / PACKAGE_PATH).glob("*.proto"))
        args = ["protoc", f"-I{staged}", f"-I{include}", f"--python_out={built}", f"--pyi_out={built}",
                f"--grpc_python_out={built}", *sources]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        for stub in (built / PACKAGE_PATH).iterdir():
            shutil.copy2(stub, out_dir / "proto" / stub.name)


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
