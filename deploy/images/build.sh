#!/bin/sh
# Build the test images (kyb/busybox:1, kyb/hello:v1, kyb/hello:v2) as OCI tars into the given directory.
# Offline and deterministic; see build.py for the details.
set -eu
exec python3 "$(dirname "$0")/build.py" "$@"
