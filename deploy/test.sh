#!/usr/bin/env bash
# The one test command: installs what is missing (Debian 12 / Ubuntu, as root), prepares ./.venv,
# then runs `ruff check .` and `pytest` (extra arguments go to pytest). Works from any directory.
#
# The tests start their own private etcd, containerd and registry instances on free ports and in their
# own directories, so the system services from these packages are never used: they are kept from starting
# during installation (policy-rc.d) and etcd/docker-registry are disabled where systemd runs, so they do
# not sit on 2379 / 5000. A system containerd is left alone (other things on the host may use it).
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

# Package list, installation and .venv preparation are shared with deploy/up.sh and deploy/provision.
# shellcheck source=deploy/lib/install.sh
. deploy/lib/install.sh

install_missing_packages
disable_system_services
prepare_venv

# shellcheck disable=SC1091
. .venv/bin/activate
status=0
say "ruff check ."
ruff check . || status=1
say "pytest -q $*"
pytest -q -p no:cacheprovider "$@" || status=1
exit "$status"
