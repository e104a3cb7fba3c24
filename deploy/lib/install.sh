# shellcheck shell=bash
# Installation steps shared by deploy/test.sh, deploy/up.sh and deploy/provision (source it, then call):
#
#   install_missing_packages   apt-get install of whatever in PACKAGES is missing (Debian 12 / Ubuntu, root),
#                              with the packaged services kept from starting during installation (policy-rc.d)
#   disable_system_services    etcd and docker-registry disabled where systemd runs, so they never sit on
#                              2379 / 5000 (a system containerd is left alone: other things may use it)
#   prepare_venv               a virtualenv with the package (editable) and its extras; reinstalled only when
#                              pyproject.toml or the extras changed
#
# Settings (environment): KYB_REPO (default: the current directory), KYB_VENV (default: $KYB_REPO/.venv),
# KYB_VENV_EXTRAS (default: test).

PACKAGES=(python3 python3-venv python3-dev gcc etcd-server etcd-client containerd runc
          containernetworking-plugins docker-registry busybox-static skopeo iptables iproute2 nftables
          curl jq util-linux)

say() { printf '==> %s\n' "$*" >&2; }

install_missing_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
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
    if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        local python
        python=$(pick_python)
        say "creating $venv with $python"
        rm -rf "$venv"
        "$python" -m venv "$venv"
    fi
    # Reinstall only when the dependency list changed: the editable install already tracks the sources.
    local stamp=$venv/.kybernetes-installed want spec=$repo
    [[ -n $extras ]] && spec="${repo}[${extras}]"
    want=$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1)
    [[ $extras == test ]] || want="$want $extras"   # the plain hash is what the test extras always used
    if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
        say "installing the project into $venv"
        "$venv/bin/python" -m pip install -q -e "$spec"
        echo "$want" > "$stamp"
    fi
}
