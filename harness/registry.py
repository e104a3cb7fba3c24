"""A private image registry and the test images (deploy/images) built and pushed to it.

* `run_registry(base)`: Debian's docker-registry on a free loopback port, storage under `base`, stopped
  by pid when the block ends; yields a `Registry`.
* `build_test_images(output)`: deploy/images/build.sh run into `output`: {image name: OCI tar path}.
* `push_oci_archive(...)`: skopeo copy of an OCI tar into a registry (plain http).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.ports import free_port
from harness.system import run_command, stop_pid

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO_ROOT / "deploy" / "images" / "build.sh"


def build_test_images(output: Path) -> dict[str, Path]:
    """{"kyb/busybox:1": tar, "kyb/hello:v1": tar, "kyb/hello:v2": tar}, built into `output`."""
    subprocess.run([str(BUILD_SCRIPT), str(output)], check=True, stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=120)
    names = json.loads((output / "images.json").read_text())
    return {name: output / file_name for name, file_name in names.items()}


@dataclass
class Registry:
    """A private plain-http registry; `host` is `127.0.0.1:PORT`."""

    host: str
    pid: int

    def reference(self, name: str) -> str:
        return f"{self.host}/{name}"


REGISTRY_CONFIG = """version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: {host}
"""


@contextlib.contextmanager
def run_registry(base: Path) -> Iterator[Registry]:
    """docker-registry serving on a free loopback port (config, storage and log under `base`)."""
    host = f"127.0.0.1:{free_port()}"
    config = base / "config.yml"
    config.write_text(REGISTRY_CONFIG.format(storage=base / "storage", host=host))
    with open(base / "registry.log", "ab") as log_file:
        process = subprocess.Popen(["docker-registry", "serve", str(config)], stdin=subprocess.DEVNULL,
                                   stdout=log_file, stderr=log_file, start_new_session=True)
    try:
        deadline = time.monotonic() + 20.0
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(base / 'registry.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{host}/v2/", timeout=1) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("docker-registry did not answer within 20s")
            time.sleep(0.05)
        yield Registry(host=host, pid=process.pid)
    finally:
        stop_pid(process.pid, grace=5.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


def push_oci_archive(*, tar: Path, registry_host: str, name: str) -> str:
    """Copy an OCI tar into a plain-http registry as `name`; return the full reference."""
    reference = f"{registry_host}/{name}"
    result = run_command(["skopeo", "copy", "--insecure-policy", "--dest-tls-verify=false",
                          f"oci-archive:{tar}", f"docker://{reference}"], timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo copy {tar} -> {reference}: {result.stderr.strip()}")
    return reference


__all__ = ["BUILD_SCRIPT", "Registry", "build_test_images", "push_oci_archive", "run_registry"]
