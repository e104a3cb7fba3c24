#!/usr/bin/env bash
# The one test command: installs what is missing (Debian 12 / Ubuntu, as root), makes ./.venv from
# requirements-test.lock, then runs `ruff check .` and `pytest` (extra arguments go to pytest). Works from any
# directory.
#
#   ./deploy/test.sh            every test but the VM lab's (what CI runs)
#   ./deploy/test.sh --fast     the pure tests of tests/unit/ only (pytest -m "not slow"): no root, no etcd,
#                               containerd or network namespace; seconds once the venv exists
#   ./deploy/test.sh --vm       the VM lab's test only (tests/test_vagrant_lab.py, marker `vagrant`): a master
#                               and 3 node VMs under libvirt (deploy/vagrant/lab.sh); tens of minutes under
#                               software emulation, so a command of its own (README, "The Vagrant lab")
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

fast=0 vm=0
if [[ ${1:-} == --fast ]]; then
    fast=1
    shift
elif [[ ${1:-} == --vm ]]; then
    vm=1
    shift
fi

if (( fast )); then
    install_missing_packages "${PYTHON_PACKAGES[@]}"
else
    install_missing_packages
    disable_system_services
fi
prepare_venv

# shellcheck disable=SC1091
. .venv/bin/activate
status=0
say "ruff check ."
ruff check . || status=1
if (( fast )); then
    say "pytest -q -m 'not slow' $*"
    pytest -q -p no:cacheprovider -m "not slow" "$@" || status=1
elif (( vm )); then
    say "pytest -v -m vagrant tests/test_vagrant_lab.py $*"
    pytest -v -p no:cacheprovider -rs -m vagrant tests/test_vagrant_lab.py "$@" || status=1
else
    # The VM lab's test has its own command (--vm); a -m of the caller's replaces this one.
    say "pytest -q -m 'not vagrant' $*"
    pytest -q -p no:cacheprovider -m "not vagrant" "$@" || status=1
fi
exit "$status"
