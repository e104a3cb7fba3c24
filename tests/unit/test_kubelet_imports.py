"""The long-running kubelet holds its credentials as PEM bytes: importing it (and the client side of identity)
never loads the `cryptography` package, which the short-lived credentials helper alone uses (~10 MiB)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import kybernetes.kubelet.main, kybernetes.kubelet.credentials, kybernetes.core.identity.credentials
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "cryptography")
print(len(loaded))
import kybernetes.kubelet.bootstrap
print(int("cryptography" in sys.modules))
"""


def test_the_kubelet_does_not_load_cryptography_but_its_helper_does():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["0", "1"], out
