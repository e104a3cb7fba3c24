#!/usr/bin/env python3
"""Build the Kybernetes test images as OCI image-layout tars, offline, from the host's busybox-static.

Images:
  kyb/busybox:1  a rootfs with /bin/busybox and one symlink per applet (PATH=/bin, Cmd sh)
  kyb/hello:v1   busybox plus /app/start.sh: writes "hello from <pod> version v1" to /www/index.html
  kyb/hello:v2   (pod = $POD_NAME, else the hostname) and serves it with busybox httpd on :8080 ($PORT),
                 /healthz answers "ok"; on SIGTERM it keeps serving $DRAIN_SECONDS (2) more, then exits 0

Everything is deterministic: tar members are sorted, owned by 0:0 with mtime 0, layers are uncompressed
and JSON is canonical (sorted keys, no spaces), so the same busybox binary always gives the same digests.
Each archive's index carries both `io.containerd.image.name` (the full name, used by `ctr images import`)
and `org.opencontainers.image.ref.name` (the tag). The output dir also gets `images.json`, a map from
image name to tar file name.

Usage: build.py OUTPUT_DIR [--busybox PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"

HELLO_SCRIPT = """#!/bin/sh
# kyb/hello {version}: write the page once at start, then serve it with busybox httpd.
# sh stays PID 1 with a TERM trap (httpd as PID 1 would ignore SIGTERM). On TERM it drains like a
# well-behaved app: it keeps serving for $DRAIN_SECONDS (default 2) while the Service proxies stop
# sending it new connections, then stops httpd and exits 0.
name="${{POD_NAME:-$(hostname)}}"
port="${{PORT:-8080}}"
drain="${{DRAIN_SECONDS:-2}}"
mkdir -p /www
echo "hello from $name version {version}" > /www/index.html
echo ok > /www/healthz
httpd -f -v -p "$port" -h /www &
pid=$!
stop() {{
    echo "hello {version} draining for ${{drain}}s"
    sleep "$drain"
    kill "$pid" 2>/dev/null
    wait "$pid"
    echo "hello {version} stopped"
    exit 0
}}
trap stop TERM INT
echo "hello {version} serving on :$port as $name"
wait "$pid"
"""


@dataclass
class Entry:
    """One member of a layer: a directory, a regular file or a symlink."""

    path: str
    kind: str  # "dir" | "file" | "symlink"
    mode: int = 0o755
    data: bytes = b""
    target: str = ""


@dataclass
class ImageSpec:
    name: str  # full image name, e.g. kyb/hello:v1
    file_name: str
    layers: list[list[Entry]]
    cmd: list[str]
    env: list[str] = field(default_factory=lambda: ["PATH=/bin"])
    exposed_ports: list[str] = field(default_factory=list)


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_bytes(entries: list[Entry]) -> bytes:
    """A deterministic tar: sorted names, root-owned, mtime 0, no user/group names."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for entry in sorted(entries, key=lambda e: e.path):
            info = tarfile.TarInfo(entry.path)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = entry.mode
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            elif entry.kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = entry.target
                archive.addfile(info)
            else:
                info.size = len(entry.data)
                archive.addfile(info, io.BytesIO(entry.data))
    return buffer.getvalue()


def oci_architecture() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def busybox_layer(busybox: Path) -> list[Entry]:
    binary = busybox.read_bytes()
    listing = subprocess.run([str(busybox), "--list"], check=True, capture_output=True, text=True).stdout
    applets = sorted({name for name in listing.split() if name and name != "busybox" and "/" not in name})
    entries = [
        Entry("bin", "dir"),
        Entry("etc", "dir"),
        Entry("root", "dir", mode=0o700),
        Entry("tmp", "dir", mode=0o1777),
        Entry("bin/busybox", "file", data=binary),
        Entry("etc/passwd", "file", mode=0o644,
              data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
        Entry("etc/group", "file", mode=0o644, data=b"root:x:0:\nnogroup:x:65534:\n"),
    ]
    entries += [Entry(f"bin/{name}", "symlink", mode=0o777, target="busybox") for name in applets]
    return entries


def hello_layer(version: str) -> list[Entry]:
    return [
        Entry("app", "dir"),
        Entry("www", "dir"),
        Entry("app/start.sh", "file", data=HELLO_SCRIPT.format(version=version).encode()),
    ]


def image_specs(busybox: Path) -> list[ImageSpec]:
    base = busybox_layer(busybox)
    specs = [ImageSpec(name="kyb/busybox:1", file_name="busybox-1.tar", layers=[base], cmd=["sh"])]
    for version in ("v1", "v2"):
        specs.append(ImageSpec(
            name=f"kyb/hello:{version}", file_name=f"hello-{version}.tar",
            layers=[base, hello_layer(version)], cmd=["/app/start.sh"], exposed_ports=["8080/tcp"],
        ))
    return specs


def build_archive(spec: ImageSpec) -> bytes:
    """Assemble one OCI image layout (blobs, index.json, oci-layout) and tar it deterministically."""
    blobs: dict[str, bytes] = {}

    def add_blob(data: bytes) -> str:
        digest = sha256_digest(data)
        blobs[digest] = data
        return digest

    layer_descriptors = []
    for layer_entries in spec.layers:
        layer = tar_bytes(layer_entries)
        layer_descriptors.append({"mediaType": LAYER_MEDIA_TYPE, "digest": add_blob(layer), "size": len(layer)})
    image_config: dict[str, object] = {"Env": spec.env, "Cmd": spec.cmd, "WorkingDir": "/"}
    if spec.exposed_ports:
        image_config["ExposedPorts"] = {port: {} for port in spec.exposed_ports}
    config = canonical_json({
        "architecture": oci_architecture(),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": image_config,
        # Uncompressed layers: the diff id is the layer digest.
        "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in layer_descriptors]},
    })
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": add_blob(config), "size": len(config)},
        "layers": layer_descriptors,
    })
    tag = spec.name.rsplit(":", 1)[1]
    index = canonical_json({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": add_blob(manifest),
            "size": len(manifest),
            "platform": {"architecture": oci_architecture(), "os": "linux"},
            "annotations": {"io.containerd.image.name": spec.name, "org.opencontainers.image.ref.name": tag},
        }],
    })
    entries = [
        Entry("blobs", "dir"),
        Entry("blobs/sha256", "dir"),
        Entry("oci-layout", "file", mode=0o644, data=canonical_json({"imageLayoutVersion": "1.0.0"})),
        Entry("index.json", "file", mode=0o644, data=index),
    ]
    entries += [Entry(f"blobs/sha256/{d.split(':', 1)[1]}", "file", mode=0o644, data=b) for d, b in blobs.items()]
    return tar_bytes(entries)


def build_all(*, output_dir: Path, busybox: Path) -> dict[str, Path]:
    """Write every image tar plus images.json into output_dir; return {image name: tar path}."""
    output_dir.mkdir(parents=True, exist_ok=True)
    built: dict[str, Path] = {}
    for spec in image_specs(busybox):
        path = output_dir / spec.file_name
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(build_archive(spec))
        temporary.replace(path)
        built[spec.name] = path
    (output_dir / "images.json").write_bytes(
        canonical_json({name: path.name for name, path in built.items()}) + b"\n")
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--busybox", type=Path, default=Path("/bin/busybox"),
                        help="a statically linked busybox binary (default: /bin/busybox)")
    options = parser.parse_args(argv)
    if not options.busybox.is_file():
        print(f"build.py: --busybox: {options.busybox} is not a file (apt-get install busybox-static)",
              file=sys.stderr)
        return 2
    for name, path in build_all(output_dir=options.output_dir, busybox=options.busybox).items():
        print(f"{name} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
