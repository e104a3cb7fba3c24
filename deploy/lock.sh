#!/usr/bin/env bash
# Recompute the lock files from pyproject.toml's ranges (needs the network to PyPI; run by a developer, never by
# the install path). `./deploy/lock.sh` keeps every pin that still fits the ranges; `./deploy/lock.sh --upgrade`
# moves every pin to the newest release the ranges allow. Either way it then regenerates the protobuf stubs with
# the locked grpcio-tools and reinstalls ./.venv from the new lock, so `./deploy/test.sh` checks the result.
#
#   requirements-test.lock   runtime + test dependencies + the build backend: what ./deploy/test.sh installs
#   requirements.lock        runtime dependencies + the build backend, a subset of the test lock with the same
#                            pins: what up.sh and the labs' provisioning install
#
# Both are pip requirement files with a sha256 hash for every file of every pinned release, resolved for every
# platform and Python >= 3.11 at once (uv's universal resolution), so plain pip installs them with
# --require-hashes on any supported machine. uv is only the resolver; its own version is pinned below.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

UV_VERSION=0.13.9
upgrade=()
case "${1:-}" in
    "") ;;
    --upgrade) upgrade=(--upgrade) ;;
    *) echo "usage: $0 [--upgrade]" >&2; exit 2 ;;
esac

tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv"
"$tools/venv/bin/pip" install -q "uv==$UV_VERSION"
compile=("$tools/venv/bin/uv" pip compile pyproject.toml --group build --universal --python-version 3.11
         --generate-hashes --no-config --quiet "${upgrade[@]}")
header="./deploy/lock.sh"

# The test lock is the superset; the runtime lock is constrained to its pins, so the two never disagree.
# Without --upgrade, uv keeps the pins already in an output file wherever they still fit.
"${compile[@]}" --extra test --custom-compile-command "$header" -o requirements-test.lock
"${compile[@]}" --custom-compile-command "$header" -c requirements-test.lock -o requirements.lock

# Install the new pins into ./.venv and regenerate the stubs with the locked grpcio-tools.
# shellcheck source=deploy/lib/install.sh
. deploy/lib/install.sh
prepare_venv
.venv/bin/python -m kybernetes.proto.generate
git --no-pager diff --stat -- requirements.lock requirements-test.lock proto/ || true
echo "lock updated; check pyproject.toml's lower bounds of grpcio and protobuf if the stubs changed," \
     "then run ./deploy/test.sh" >&2
