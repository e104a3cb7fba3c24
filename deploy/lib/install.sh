# shellcheck shell=bash
# Installation steps shared by deploy/test.sh, deploy/up.sh and deploy/provision (source it, then call):
#
#   install_missing_packages   apt-get install of whatever in PACKAGES (or the packages given) is missing
#                              (Debian 12 / Ubuntu, root),
#                              with the packaged services kept from starting during installation (policy-rc.d)
#   disable_system_services    etcd and docker-registry disabled where systemd runs, so they never sit on
#                              2379 / 5000 (a system containerd is left alone: other things may use it)
#   prepare_venv               a virtualenv with exactly the pins of a lock file (requirements-test.lock, or
#                              requirements.lock when KYB_VENV_EXTRAS is empty; made by deploy/lock.sh) and the
#                              package itself (editable); made anew only when the lock or pyproject.toml changed
#
# Settings (environment): KYB_REPO (default: the current directory), KYB_VENV (default: $KYB_REPO/.venv),
# KYB_VENV_EXTRAS (default: test), KYB_WHEELHOUSE (a folder of wheels to install from instead of an index:
# `pip install --no-index`; the Vagrant VMs use the one deploy/vagrant/wheelhouse.sh fills).

# What a virtualenv of the project needs (all that `./deploy/test.sh --fast` installs), then everything else.
PYTHON_PACKAGES=(python3 python3-venv python3-dev gcc)
PACKAGES=("${PYTHON_PACKAGES[@]}" etcd-server etcd-client containerd runc
          containernetworking-plugins docker-registry busybox-static skopeo iptables iproute2 nftables
          curl jq util-linux)

say() { printf '==> %s\n' "$*" >&2; }

install_missing_packages() {
    local missing=() pkg wanted=("$@")
    [[ ${#wanted[@]} -gt 0 ]] || wanted=("${PACKAGES[@]}")
    for pkg in "${wanted[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
            missing+=("$pkg")
        fi
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    if [[ $(id -u) -ne 0 ]]; then
        say "missing packages: ${missing[*]} (run as root to install them)"
        exit 1
    fi
    say "installing: ${missing[*]}"
    # Keep maintainer scripts from starting the packaged services; restore any existing policy afterwards.
    local policy=/usr/sbin/policy-rc.d saved=""
    if [[ -e $policy ]]; then saved=$(mktemp); cp -p "$policy" "$saved"; fi
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    local rc=0
    {
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q &&
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    } || rc=$?
    if [[ -n $saved ]]; then mv "$saved" "$policy"; else rm -f "$policy"; fi
    [[ $rc -eq 0 ]] || { say "package installation failed"; exit "$rc"; }
}

disable_system_services() {
    # Only where systemd is actually running; elsewhere the services were never started.
    [[ -d /run/systemd/system ]] || return 0
    local unit
    for unit in etcd docker-registry; do
        if systemctl list-unit-files "$unit.service" >/dev/null 2>&1; then
            systemctl disable --now "$unit.service" >/dev/null 2>&1 || true
        fi
    done
}

pick_python() {
    local candidate
    for candidate in python3.11 python3.12 python3.13 python3 ; do
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    say "no python3 >= 3.11 on PATH"
    exit 1
}

prepare_venv() {
    local repo=${KYB_REPO:-$PWD}
    local venv=${KYB_VENV:-$repo/.venv}
    local extras=${KYB_VENV_EXTRAS-test}
    local lock
    case $extras in
        test) lock=$repo/requirements-test.lock ;;
        "") lock=$repo/requirements.lock ;;
        *) say "KYB_VENV_EXTRAS: must be 'test' or empty, got '$extras'"; exit 1 ;;
    esac
    # The venv holds exactly the lock's pins: whenever the lock changed, it is made anew (an upgrade in place
    # would leave packages the new lock no longer has). Two stamps: the dependencies (the lock's hash: a venv
    # made ahead, as the VM box's /opt/kybernetes/venv, has only this one) and the project installed on top
    # (the lock, pyproject.toml and the repository's path).
    local stamp=$venv/.kybernetes-installed deps_stamp=$venv/.kybernetes-deps want deps
    deps=$(sha256sum < "$lock" | cut -d' ' -f1)
    want=$(cat "$lock" "$repo/pyproject.toml" <(echo "$repo") | sha256sum | cut -d' ' -f1)
    local usable=no
    [[ -x $venv/bin/python ]] && "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        2>/dev/null && usable=yes
    if [[ $usable == yes && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        return 0
    fi
    local source=()
    # From a wheelhouse (the VMs, under software emulation): no byte-compiling of every module at install
    # time; Python compiles the ones it imports, once.
    [[ -z ${KYB_WHEELHOUSE:-} ]] || source=(--no-index --find-links "$KYB_WHEELHOUSE" --no-compile)
    if [[ $usable == yes && -f $deps_stamp && $(cat "$deps_stamp") == "$deps" ]]; then
        say "installing the project into $venv (its dependencies are those of ${lock#"$repo"/})"
    else
        local python
        python=$(pick_python)
        say "creating $venv with $python from ${lock#"$repo"/}"
        rm -rf "$venv"
        "$python" -m venv "$venv"
        # Every file's hash is checked; --no-deps because the lock already lists every transitive dependency.
        "$venv/bin/python" -m pip install -q "${source[@]}" --require-hashes --no-deps -r "$lock"
        echo "$deps" > "$deps_stamp"
    fi
    # The project itself, editable, built by the locked setuptools (no unpinned build environment).
    "$venv/bin/python" -m pip install -q "${source[@]}" --no-deps --no-build-isolation -e "$repo"
    echo "$want" > "$stamp"
}
