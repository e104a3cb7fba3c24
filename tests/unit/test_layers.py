"""The layers of the code as a contract, checked on the import graph (grimp, the graph library behind
import-linter):

    ctl.cli  >  master | kubelet | ctl.client  >  core  >  proto

A higher layer may import a lower one, never the reverse; the three in the middle never import each other.
The CLI is one user of the client library and reaches the cluster through it only; installed code never
imports the harness, the benchmarks or the tests; the benchmarks use the harness, never the tests.

The graph is built from the source tree laid out as the wheel installs it (`wheel_layout`), in a child
process, so the test sees exactly the files on disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LAYERS = ["kybernetes.ctl.cli", ["kybernetes.master", "kybernetes.kubelet", "kybernetes.ctl.client"],
          "kybernetes.core", "kybernetes.proto"]
FORBIDDEN = [  # (importer, imported): no chain of imports may lead from the first to the second
    ("kybernetes.ctl", "kybernetes.master"),
    ("kybernetes.ctl", "kybernetes.kubelet"),
    ("kybernetes", "harness"),
    ("kybernetes", "bench"),
    ("kybernetes", "tests"),
    ("bench", "tests"),
    ("harness", "tests"),
    ("harness", "bench"),
]

CHECK = """
import json, sys
import grimp

layers, forbidden = json.loads(sys.argv[1])
graph = grimp.build_graph("kybernetes", "harness", "bench", "tests", cache_dir=None)
broken = []
spec = [grimp.Layer(*layer, independent=True) if isinstance(layer, list) else layer for layer in layers]
for dependency in sorted(graph.find_illegal_dependencies_for_layers(layers=spec),
                         key=lambda d: (d.importer, d.imported)):
    for route in dependency.routes:
        chain = [*route.heads, *route.middle, *route.tails]
        broken.append(f"layers: {dependency.importer} -> {dependency.imported} via {sorted(chain)}")
for importer, imported in forbidden:
    chain = graph.find_shortest_chain(importer=importer, imported=imported, as_packages=True)
    if chain:
        broken.append(f"forbidden: {importer} -> {imported}: " + " -> ".join(chain))
print(json.dumps({"modules": len(graph.modules), "broken": broken}))
"""


def _check(layout: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(layout)}
    result = subprocess.run([sys.executable, "-c", CHECK, json.dumps([LAYERS, FORBIDDEN])], cwd=layout, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_import_contracts_are_kept(wheel_layout: Path):
    report = _check(wheel_layout)
    assert report["modules"] > 150, f"the graph holds only {report['modules']} modules: is the layout complete?"
    assert not report["broken"], "import contract broken:\n" + "\n".join(report["broken"])


def test_a_wrong_import_breaks_the_contract(wheel_layout: Path, tmp_path: Path):
    """The contract can fail: the same tree with one upward import (the client importing the master)."""
    import shutil

    layout = tmp_path / "layout"
    shutil.copytree(wheel_layout, layout)
    wrong = layout / "kybernetes" / "ctl" / "client" / "wrong.py"
    wrong.write_text("from kybernetes.master.api import objects  # noqa: F401\n")
    report = _check(layout)
    assert any("kybernetes.ctl.client.wrong" in line for line in report["broken"]), report["broken"]
