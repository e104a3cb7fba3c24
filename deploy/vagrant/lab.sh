#!/usr/bin/env bash
# The Vagrant VM lab on this machine: a master VM and N node VMs (libvirt), offline, as root.
#
#   lab.sh up [--nodes N] [--masters M]
#                                  installs what is missing (vagrant, vagrant-libvirt, libvirt, QEMU, debootstrap),
#                                  starts libvirtd and virtlogd if no system libvirtd answers, makes the lab's
#                                  networks and storage pool, builds the box if absent (build-box.sh), fills the
#                                  wheelhouse (wheelhouse.sh), then `vagrant up` of the master(s), one after
#                                  the other, then of the nodes, together
#   lab.sh down [--purge]          `vagrant destroy -f`, then removes the networks and pool, stops the daemons it
#                                  started (by pid) and removes the iptables chains their networks left; the box,
#                                  its base volume and the wheelhouse stay cached (--purge removes them too)
#   lab.sh status                  VMs, their state, and `kybctl get nodes`
#   lab.sh ssh NAME [CMD...]       ssh into a VM (master, node1, ...): a shell, or CMD
#   lab.sh kybctl ARGS...          kybctl with the master VM's admin credentials (copied to the lab dir at up)
#   lab.sh vagrant ARGS...         vagrant with the lab's settings (e.g. `lab.sh vagrant provision node1`)
#   lab.sh kill-node N | start-node N    power a VM off (virsh destroy: a power cut) / on again; N is a node
#                                  number or a VM name (master2)
#   lab.sh partition N | heal N    pull / plug the cable of a VM on the private network (N may be `master`)
#   lab.sh env                     the settings for `vagrant` run by hand (eval "$(lab.sh env)")
#
# Network safety: every VM NIC is on one of two libvirt networks this script defines, both isolated (no
# <forward>: nothing is routed off this machine) and without DNS (their dnsmasq answers DHCP only):
#   <lab>-mgmt  KYB_VM_MGMT_SUBNET.0/24 (192.168.121), DHCP: Vagrant's SSH to the VMs (eth0)
#   <lab>-lab   KYB_VM_SUBNET.0/24 (192.168.56), static: the cluster (master .10, nodeN .(10+N)) (eth1)
# The host is .1 on both; it reaches every VM's NodePorts on the private network.
#
# Acceleration: KVM when /dev/kvm is usable and the CPU has vmx/svm, else QEMU's software emulation (TCG,
# CPU model kvm64); KYB_VM_ACCEL=kvm|tcg forces one (the Vagrantfile reads it).
#
# Settings (environment, read by `up`; later commands read them back from the lab dir):
#   KYB_VAGRANT_DIR (/var/lib/kybernetes/vagrant)  KYB_NODES (3)  KYB_MASTERS (1; 3: one etcd member on each
#   master VM, docs/lab-ha.md)  KYB_VM_MEMORY (1024)  KYB_VM_CPUS (1)
#   KYB_VM_SUBNET (192.168.56)  KYB_VM_MGMT_SUBNET (192.168.121)  KYB_VM_ACCEL (auto)  KYB_BOX_WORK (box cache)
#   KYB_VM_LAB (kyb: names the networks <lab>-mgmt/<lab>-lab, the pool <lab>-lab, bridges <lab>vm0/1, domains
#   <lab>-master, ...)  KYB_VAGRANT_DOTFILE (<repo>/.vagrant: Vagrant's machine data; VAGRANT_DOTFILE_PATH)
# A second lab (the VM test's) runs beside the first with its own KYB_VAGRANT_DIR, KYB_VM_LAB, subnets and
# KYB_VAGRANT_DOTFILE.
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
HERE=$(dirname "$SELF")
REPO=$(cd "$HERE/../.." && pwd)
DIR=${KYB_VAGRANT_DIR:-/var/lib/kybernetes/vagrant}
VIRSH=(virsh -q -c qemu:///system)
BOX=kybernetes/debian12
HOST_PACKAGES=(vagrant vagrant-libvirt libvirt-daemon-system qemu-system-x86 qemu-utils debootstrap fdisk
               dnsmasq-base rsync openssh-client iptables nftables jq curl tini)

started=$SECONDS
say() { printf '==> [%4ss] %s\n' "$((SECONDS - started))" "$*" >&2; }
die() { printf 'vagrant lab: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$SELF" | sed -e '$d' -e 's/^# \{0,1\}//'; }

# ----------------------------------------------------------------------------- settings

load_settings() {
    if [[ -f $DIR/lab.env ]]; then
        # shellcheck disable=SC1091
        . "$DIR/lab.env"
    else
        NODES=${KYB_NODES:-3}
        MASTERS=${KYB_MASTERS:-1}
        MEMORY=${KYB_VM_MEMORY:-1024}
        CPUS=${KYB_VM_CPUS:-1}
        SUBNET=${KYB_VM_SUBNET:-192.168.56}
        MGMT_SUBNET=${KYB_VM_MGMT_SUBNET:-192.168.121}
        ACCEL=${KYB_VM_ACCEL:-auto}
        LAB=${KYB_VM_LAB:-kyb}
        DOTFILE=${KYB_VAGRANT_DOTFILE:-$REPO/.vagrant}
    fi
    [[ $LAB =~ ^[a-z][a-z0-9]{0,7}$ ]] || die "KYB_VM_LAB must be 1-8 lowercase letters/digits (got '$LAB')"
    NET=$LAB-lab MGMT_NET=$LAB-mgmt POOL=$LAB-lab
    [[ $SUBNET =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "KYB_VM_SUBNET must be three octets (got '$SUBNET')"
    [[ $MGMT_SUBNET =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "KYB_VM_MGMT_SUBNET must be three octets (got '$MGMT_SUBNET')"
}

save_settings() {
    mkdir -p "$DIR"
    cat > "$DIR/lab.env" <<EOF
# The VM lab's settings, written by deploy/vagrant/lab.sh up.
NODES=$NODES
MASTERS=$MASTERS
MEMORY=$MEMORY
CPUS=$CPUS
SUBNET=$SUBNET
MGMT_SUBNET=$MGMT_SUBNET
ACCEL=$ACCEL
LAB=$LAB
DOTFILE=$DOTFILE
EOF
}

kvm_usable() {  # /dev/kvm that can run ordinary guests (a PVM /dev/kvm, without vmx/svm, cannot)
    [[ -c /dev/kvm && -r /dev/kvm && -w /dev/kvm ]] && grep -qwE 'vmx|svm' /proc/cpuinfo
}

resolved_accel() {
    case $ACCEL in
        kvm|tcg) echo "$ACCEL" ;;
        auto) if kvm_usable; then echo kvm; else echo tcg; fi ;;
        *) die "KYB_VM_ACCEL must be kvm, tcg or auto (got '$ACCEL')" ;;
    esac
}

vagrant_env() {  # the environment every vagrant command of the lab runs with
    printf '%s\n' VAGRANT_DEFAULT_PROVIDER=libvirt "KYB_BOX=$BOX" "KYB_NODES=$NODES" "KYB_MASTERS=$MASTERS" "KYB_VM_MEMORY=$MEMORY" \
        "KYB_VM_CPUS=$CPUS" "KYB_VM_SUBNET=$SUBNET" "KYB_VM_ACCEL=$(resolved_accel)" \
        "KYB_LIBVIRT_NETWORK=$NET" "KYB_LIBVIRT_MGMT_NETWORK=$MGMT_NET" \
        "KYB_LIBVIRT_MGMT_ADDRESS=$MGMT_SUBNET.0/24" "KYB_LIBVIRT_POOL=$POOL" "KYB_VM_PREFIX=$LAB-" \
        "KYB_SERIAL_LOG_DIR=$DIR/console" "VAGRANT_DOTFILE_PATH=$DOTFILE"
}

run_vagrant() {
    local envs=()
    mapfile -t envs < <(vagrant_env)
    if [[ -t 1 ]]; then
        (cd "$REPO" && env "${envs[@]}" vagrant "$@")
    else
        # Into a log or a pipe: without the upload's thousands of "Progress: N%" redraws.
        (cd "$REPO" && env "${envs[@]}" vagrant "$@") | sed -u 's/\r/\n/g' |
            { grep --line-buffered -v '^.\{0,4\}Progress: ' || true; }
    fi
}

lab_exists() { [[ -f $DIR/lab.env ]]; }
require_lab() { lab_exists || die "no VM lab at $DIR (run: lab.sh up)"; }

master_names() { echo master; local m; for ((m = 2; m <= MASTERS; m++)); do echo "master$m"; done; }
node_names() { local n; for ((n = 1; n <= NODES; n++)); do echo "node$n"; done; }
vm_names() { master_names; node_names; }
vm_name() {  # a VM's name from a node number or a name
    local name=$1
    [[ $name =~ ^[0-9]+$ ]] && name=node$name
    local all
    all=" $(vm_names | tr '\n' ' ')"
    [[ $all == *" $name "* ]] || die "no VM '$1' in this lab (${all# })"
    echo "$name"
}
vm_ip() {  # master i at SUBNET.(11-i), node N at SUBNET.(10+N)
    case $1 in
        master) echo "$SUBNET.10" ;;
        master*) echo "$SUBNET.$((11 - ${1#master}))" ;;
        node*) echo "$SUBNET.$((10 + ${1#node}))" ;;
    esac
}

domain_of() {  # the libvirt domain (uuid) of a VM, from Vagrant's machine data
    local id=$DOTFILE/machines/$1/libvirt/id
    [[ -s $id ]] || die "$1 has no VM (run: lab.sh up)"
    cat "$id"
}

timed() {  # timed "what" command...: shows the step, runs it, prints its time
    local what=$1 t0=$SECONDS; shift
    say "$what ..."
    "$@"
    say "$what: done in $((SECONDS - t0))s"
}

# ----------------------------------------------------------------------------- libvirt

libvirt_answers() { timeout 10 "${VIRSH[@]}" uri >/dev/null 2>&1; }

pid_alive() {  # pid_alive PIDFILE NAME: the pid in the file is a running NAME
    local pid
    pid=$(cat "$1" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/comm && $(cat "/proc/$pid/comm") == "$2" ]] && echo "$pid"
    return 0
}

start_libvirt() {
    mkdir -p "$DIR"
    if libvirt_answers; then
        if [[ -z $(pid_alive "$DIR/libvirtd.pid" libvirtd) ]]; then say "using the running libvirtd"; fi
        return 0
    fi
    command -v libvirtd >/dev/null || die "libvirtd is missing"
    command -v tini >/dev/null || die "tini is missing"
    # What we change on the host is recorded first, so `down` restores exactly that.
    if [[ ! -f $DIR/host.env ]]; then
        printf 'LIBVIRT_CHAINS_BEFORE="%s"\nNFT_TABLES_BEFORE="%s"\n' "$(libvirt_chains | tr '\n' ' ')" \
            "$(nft_tables | tr '\n' ' ')" > "$DIR/host.env"
    fi
    # Networks marked autostart (Debian's NAT "default", if enabled) must not start with our libvirtd:
    # they are moved aside while it starts and put back at once.
    local autostart=/etc/libvirt/qemu/networks/autostart hidden=$DIR/autostart-hidden link
    mkdir -p "$hidden"
    for link in "$autostart"/*.xml; do [[ -e $link || -L $link ]] && mv "$link" "$hidden/"; done
    if [[ -z $(pid_alive "$DIR/virtlogd.pid" virtlogd) ]]; then
        virtlogd -d -p "$DIR/virtlogd.pid"
    fi
    # Under tini as a subreaper: libvirt daemonizes QEMU (its capability probes too) and waits until a killed one
    # is gone; an orphan is reparented to PID 1, and where PID 1 reaps nothing (a container's init) the zombie
    # stays, and every probe and domain start stalls.
    rm -f "$DIR/libvirtd.pid"
    setsid nohup tini -s -- libvirtd -p "$DIR/libvirtd.pid" >> "$DIR/libvirtd.log" 2>&1 < /dev/null &
    local deadline=$((SECONDS + 30))
    until libvirt_answers; do
        (( SECONDS < deadline )) || { restore_autostart; die "libvirtd does not answer (pid file $DIR/libvirtd.pid)"; }
        sleep 0.5
    done
    restore_autostart
    say "started libvirtd (pid $(cat "$DIR/libvirtd.pid")) and virtlogd (pid $(cat "$DIR/virtlogd.pid"))"
}

restore_autostart() {
    local hidden=$DIR/autostart-hidden link
    [[ -d $hidden ]] || return 0
    for link in "$hidden"/*.xml; do [[ -e $link || -L $link ]] && mv "$link" /etc/libvirt/qemu/networks/autostart/; done
    rmdir "$hidden"
}

libvirt_chains() {  # "command:table:chain" of every LIBVIRT_* chain, IPv4 and IPv6
    local cmd table
    for cmd in iptables ip6tables; do
        for table in filter nat mangle; do
            "$cmd" -w -t "$table" -S 2>/dev/null |
                awk -v p="$cmd:$table" '$1 == "-N" && $2 ~ /^LIBVIRT_/ {print p ":" $2}'
        done
    done
    return 0
}

nft_tables() { nft list tables 2>/dev/null | awk '$1 == "table" {print $2 ":" $3}'; }

network_xml() {  # network_xml NAME BRIDGE SUBNET DHCP(yes/no): isolated (no <forward>), no DNS
    local name=$1 bridge=$2 subnet=$3 dhcp=$4
    echo "<network><name>$name</name><bridge name='$bridge' stp='off' delay='0'/><dns enable='no'/>"
    echo "<ip address='$subnet.1' netmask='255.255.255.0'>"
    [[ $dhcp == no ]] || echo "<dhcp><range start='$subnet.100' end='$subnet.254'/></dhcp>"
    echo "</ip></network>"
}

define_network() {
    local name=$1 xml
    xml=$(network_xml "$@")
    if ! "${VIRSH[@]}" net-info "$name" >/dev/null 2>&1; then
        "${VIRSH[@]}" net-define <(echo "$xml") >/dev/null
    fi
    # (Output in variables: `virsh … | grep -q` fails under pipefail when grep stops reading early.)
    local info
    info=$("${VIRSH[@]}" net-info "$name")
    [[ $info =~ Active:[[:space:]]+yes ]] || "${VIRSH[@]}" net-start "$name" >/dev/null
    # Our own networks never forward: refuse one that does (a name clash with someone else's).
    [[ $("${VIRSH[@]}" net-dumpxml "$name") != *"<forward"* ]] || die "libvirt network $name forwards: not ours"
}

define_pool() {
    mkdir -p "$DIR/pool"
    if ! "${VIRSH[@]}" pool-info "$POOL" >/dev/null 2>&1; then
        "${VIRSH[@]}" pool-define-as "$POOL" dir --target "$DIR/pool" >/dev/null
    fi
    [[ $("${VIRSH[@]}" pool-info "$POOL") =~ State:[[:space:]]+running ]] || "${VIRSH[@]}" pool-start "$POOL" >/dev/null
    "${VIRSH[@]}" pool-refresh "$POOL" >/dev/null
}

link_base_volume() {  # the box's image as the pool's base volume: a hard link, not vagrant-libvirt's 1.3 GB copy
    local version image volume
    version=$(cat "$DIR/box-version" 2>/dev/null || true)
    [[ -n $version ]] || return 0
    image=${VAGRANT_HOME:-$HOME/.vagrant.d}/boxes/${BOX//\//-VAGRANTSLASH-}/$version/libvirt/box.img
    # The name vagrant-libvirt gives it (and finds it by): QEMU opens it read-only, as every VM's backing file.
    volume=$DIR/pool/${BOX//\//-VAGRANTSLASH-}_vagrant_box_image_${version}_box.img
    [[ -f $image && ! -e $volume ]] || return 0
    if ln "$image" "$volume" 2>/dev/null; then
        "${VIRSH[@]}" pool-refresh "$POOL" >/dev/null
        say "base volume linked from the box (no copy)"
    fi
}

libvirt_up() {
    start_libvirt
    define_network "$MGMT_NET" "${LAB}vm0" "$MGMT_SUBNET" yes
    define_network "$NET" "${LAB}vm1" "$SUBNET" no
    define_pool
}

libvirt_down() {
    local name
    for name in "$NET" "$MGMT_NET"; do
        if "${VIRSH[@]}" net-info "$name" >/dev/null 2>&1; then
            "${VIRSH[@]}" net-destroy "$name" >/dev/null 2>&1 || true
            "${VIRSH[@]}" net-undefine "$name" >/dev/null 2>&1 || true
        fi
    done
    if "${VIRSH[@]}" pool-info "$POOL" >/dev/null 2>&1; then
        "${VIRSH[@]}" pool-destroy "$POOL" >/dev/null 2>&1 || true
        "${VIRSH[@]}" pool-undefine "$POOL" >/dev/null 2>&1 || true
    fi
}

stop_pid() {  # stop_pid PIDFILE NAME: SIGTERM, then SIGKILL after 15 s
    local pid deadline
    pid=$(pid_alive "$1" "$2")
    if [[ -n $pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 15))
        while [[ -n $(pid_alive "$1" "$2") ]]; do
            if (( SECONDS >= deadline )); then kill -KILL "$pid" 2>/dev/null || true; fi
            sleep 0.2
        done
        say "stopped $2 (pid $pid)"
    fi
    rm -f "$1"
}

remove_libvirt_chains() {  # what our libvirtd added to the firewall (what was there before stays)
    [[ -f $DIR/host.env ]] || return 0
    local LIBVIRT_CHAINS_BEFORE="" NFT_TABLES_BEFORE="" entry cmd table chain builtin rest
    # shellcheck disable=SC1091
    . "$DIR/host.env"
    local ours=()
    while read -r entry; do
        [[ -n $entry && " $LIBVIRT_CHAINS_BEFORE " != *" $entry "* ]] && ours+=("$entry")
    done < <(libvirt_chains)
    for entry in "${ours[@]}"; do  # first every jump and rule, then the chains (they refer to each other)
        IFS=: read -r cmd table chain <<< "$entry"
        for builtin in INPUT OUTPUT FORWARD PREROUTING POSTROUTING; do
            while "$cmd" -w -t "$table" -D "$builtin" -j "$chain" 2>/dev/null; do :; done
        done
        "$cmd" -w -t "$table" -F "$chain" 2>/dev/null || true
    done
    for entry in "${ours[@]}"; do
        IFS=: read -r cmd table chain <<< "$entry"
        "$cmd" -w -t "$table" -X "$chain" 2>/dev/null || true
    done
    # iptables-nft makes a table on first use and never deletes it: drop the ones that came with us, if empty.
    while read -r entry; do
        [[ -n $entry && " $NFT_TABLES_BEFORE " != *" $entry "* ]] || continue
        IFS=: read -r cmd rest <<< "$entry"
        if ! nft list table "$cmd" "$rest" 2>/dev/null | grep -vqE '^\s*(table |chain |type |policy |\}|$)'; then
            nft delete table "$cmd" "$rest" 2>/dev/null || true
        fi
    done < <(nft_tables)
    rm -f "$DIR/host.env"
}

# ----------------------------------------------------------------------------- up

install_host_packages() {
    KYB_REPO=$REPO
    export KYB_REPO
    # shellcheck source=deploy/lib/install.sh
    . "$REPO/deploy/lib/install.sh"
    install_missing_packages "${HOST_PACKAGES[@]}"
}

ensure_box() {
    local catalog version
    catalog=$("$HERE/build-box.sh" --add | cut -f3)
    version=$(jq -r '.versions[0].version' "$catalog")
    echo "$version" > "$DIR/box-version"
}

ssh_config() {  # Vagrant's ssh settings for every VM, for quick ssh without starting vagrant each time
    run_vagrant ssh-config > "$DIR/ssh-config.tmp" 2>/dev/null || true
    [[ -s $DIR/ssh-config.tmp ]] && mv "$DIR/ssh-config.tmp" "$DIR/ssh-config"
    rm -f "$DIR/ssh-config.tmp"
}

vm_ssh() {  # vm_ssh NAME CMD...
    local name=$1; shift
    [[ -f $DIR/ssh-config ]] || ssh_config
    # 60 s to connect, banner included: an emulated guest under load (6 VMs on 2 cores) was seen to take over 10.
    ssh -F "$DIR/ssh-config" -o ConnectTimeout=60 -o LogLevel=ERROR "$name" "$@"
}

fetch_admin_config() {  # the master's admin credentials, for kybctl on this host (it reaches every master)
    local attempt
    for attempt in 1 2 3; do
        (umask 077 && vm_ssh master sudo cat /var/lib/kybernetes/master/admin.conf > "$DIR/admin.conf.tmp") && break
        [[ $attempt -lt 3 ]] || die "could not read the admin credentials from the master VM (ssh failed 3 times)"
        say "ssh to the master failed (attempt $attempt of 3); trying again"
    done
    local servers="" name
    while read -r name; do servers+=${servers:+,}$(vm_ip "$name"):6443; done < <(master_names)
    if [[ -x $REPO/.venv/bin/python ]]; then
        "$REPO/.venv/bin/python" "$REPO/deploy/lib/cluster.py" kubeconfig --kubeconfig "$DIR/admin.conf.tmp" \
            --server "$servers" --out "$DIR/admin.conf"
        rm -f "$DIR/admin.conf.tmp"
    else
        mv "$DIR/admin.conf.tmp" "$DIR/admin.conf"
    fi
}

up_together() {  # one `vagrant up NAME` process per VM, at once; fails if any fails (its log is printed)
    # Not `vagrant up --parallel`: vagrant-libvirt's threads in one process were seen to stall until a signal
    # woke them (Debian's vagrant 2.3.4, vagrant-libvirt 0.11.2).
    local name pids=() files=() failed=() i
    mkdir -p "$DIR/logs"
    for name in "$@"; do
        files+=("$DIR/logs/up-$name.log")
        : > "$DIR/logs/up-$name.log"
        run_vagrant up "$name" > "$DIR/logs/up-$name.log" 2>&1 &
        pids+=($!)
    done
    # Progress: the main steps of each VM and what its provisioning prints, as they come, until all are done.
    local watcher follower
    ( for i in "${pids[@]}"; do while kill -0 "$i" 2>/dev/null; do sleep 1; done; done ) &
    watcher=$!
    tail -q -n +1 -F --pid="$watcher" "${files[@]}" 2>/dev/null | grep --line-buffered -E \
        '^==> [a-z0-9]+: (Starting domain|Machine booted|Rsyncing folder|Running provisioner)|^ +[a-z0-9]+: ==> ' &
    follower=$!
    for i in "${!pids[@]}"; do
        wait "${pids[i]}" || failed+=("${*:i+1:1}")
    done
    wait "$watcher" "$follower" 2>/dev/null || true
    for name in "${failed[@]}"; do
        tail -n 40 "$DIR/logs/up-$name.log" >&2
    done
    [[ ${#failed[@]} -eq 0 ]] || die "vagrant up failed for: ${failed[*]} (logs in $DIR/logs)"
}

cmd_up() {
    while [[ $# -gt 0 ]]; do
        case $1 in
            --nodes) KYB_NODES=${2:-}; shift 2 || die "--nodes needs a number" ;;
            --masters) KYB_MASTERS=${2:-}; shift 2 || die "--masters needs a number" ;;
            *) die "up: unknown option $1" ;;
        esac
    done
    [[ $(id -u) -eq 0 ]] || die "run as root"
    if ! lab_exists; then NODES=${KYB_NODES:-$NODES} MASTERS=${KYB_MASTERS:-$MASTERS}; fi
    [[ $NODES =~ ^[0-9]+$ && $NODES -ge 1 && $NODES -le 20 ]] || die "--nodes must be 1..20 (got '$NODES')"
    [[ $MASTERS =~ ^[1-5]$ ]] || die "--masters must be 1..5 (got '$MASTERS')"
    timed "1/6 host packages" install_host_packages
    mkdir -p "$DIR/console"
    save_settings
    say "acceleration: $(resolved_accel) (KYB_VM_ACCEL=$ACCEL); $((NODES + MASTERS)) VMs of ${MEMORY} MiB, $CPUS vCPU"
    timed "2/6 libvirt (daemons, networks $MGMT_NET and $NET, pool $POOL)" libvirt_up
    timed "3/6 box $BOX (deploy/vagrant/build-box.sh)" ensure_box
    link_base_volume
    timed "4/6 wheelhouse (deploy/vagrant/wheelhouse.sh)" "$HERE/wheelhouse.sh"
    # The masters one after the other (each hands what it made to the next through the host), then the nodes.
    local name nodes=()
    while read -r name; do timed "5/6 vagrant up $name" run_vagrant up "$name"; done < <(master_names)
    mapfile -t nodes < <(node_names)
    timed "6/6 vagrant up ${nodes[*]} (together)" up_together "${nodes[@]}"
    ssh_config
    fetch_admin_config
    say "VM lab up in $((SECONDS - started))s; try:"
    printf '    %s kybctl get nodes -o wide\n    %s ssh master\n' "$SELF" "$SELF" >&2
}

# ----------------------------------------------------------------------------- down

cmd_down() {
    local purge=no
    [[ ${1:-} != --purge ]] || purge=yes
    if lab_exists && libvirt_answers; then
        timed "vagrant destroy -f" run_vagrant destroy -f || say "warning: vagrant destroy failed; removing domains by hand"
        # Whatever vagrant could not remove (a half-made VM): the domains named in its machine data.
        local name id
        while read -r name; do
            id=$DOTFILE/machines/$name/libvirt/id
            [[ -s $id ]] || continue
            "${VIRSH[@]}" destroy "$(cat "$id")" >/dev/null 2>&1 || true
            "${VIRSH[@]}" undefine "$(cat "$id")" --remove-all-storage >/dev/null 2>&1 || true
            rm -f "$id"
        done < <(vm_names)
    fi
    if libvirt_answers; then
        if [[ $purge == yes ]] && "${VIRSH[@]}" pool-info "$POOL" >/dev/null 2>&1; then
            local vol
            while read -r vol; do
                "${VIRSH[@]}" vol-delete --pool "$POOL" "$vol" >/dev/null 2>&1 || true
            done < <("${VIRSH[@]}" vol-list "$POOL" | awk '{print $1}')
        fi
        libvirt_down
    fi
    stop_pid "$DIR/libvirtd.pid" libvirtd
    stop_pid "$DIR/virtlogd.pid" virtlogd
    restore_autostart
    remove_libvirt_chains
    rm -f "$DOTFILE/kyb-join-token" "$DIR/ssh-config" "$DIR/admin.conf" "$DIR/lab.env" "$DIR/box-version"
    rm -rf "$DOTFILE/kyb-master-secrets"  # the server token and the etcd CA key the masters shared
    if [[ $purge == yes ]]; then
        local version
        while read -r version; do
            vagrant box remove --force --provider libvirt --box-version "$version" "$BOX" >/dev/null 2>&1 || true
        done < <(vagrant box list --machine-readable 2>/dev/null |
                 awk -F, -v box="$BOX" '$3 == "box-name" {name = $4} $3 == "box-version" && name == box {print $4}')
        rm -rf "${KYB_BOX_WORK:-/var/cache/kybernetes/vagrant-box}" "$REPO/.wheelhouse" "$DIR"
    fi
    say "VM lab down"
}

# ----------------------------------------------------------------------------- faults and status

private_mac() {  # the MAC of a VM's NIC on the private network
    "${VIRSH[@]}" domiflist "$1" | awk -v net="$NET" '$3 == net {print $5; exit}'
}

cmd_partition() {  # cmd_partition NAME up|down
    local name=$1 state=$2 domain mac
    domain=$(domain_of "$name")
    mac=$(private_mac "$domain")
    [[ -n $mac ]] || die "$name has no NIC on $NET"
    "${VIRSH[@]}" domif-setlink "$domain" "$mac" "$state" >/dev/null
    if [[ $state == down ]]; then say "$name partitioned (its cable on $NET pulled)"; else say "$name healed"; fi
}

cmd_kill_node() {
    local name=$1
    "${VIRSH[@]}" destroy "$(domain_of "$name")" >/dev/null
    say "$name is off (powered off: virsh destroy); power it on with: lab.sh start-node $name"
}

cmd_start_node() {
    local name=$1
    "${VIRSH[@]}" start "$(domain_of "$name")" >/dev/null
    say "$name powered on; its kubelet starts at boot"
}

cmd_status() {
    local name domain state
    printf '%-8s %-16s %-10s\n' VM IP STATE
    while read -r name; do
        state=not-created domain=""
        if [[ -s $DOTFILE/machines/$name/libvirt/id ]]; then
            domain=$(cat "$DOTFILE/machines/$name/libvirt/id")
            state=$("${VIRSH[@]}" domstate "$domain" 2>/dev/null || echo unknown)
        fi
        printf '%-8s %-16s %-10s\n' "$name" "$(vm_ip "$name")" "$state"
    done < <(vm_names)
    cmd_kybctl --request-timeout 5s get nodes -o wide 2>&1 || true
}

cmd_kybctl() {
    local kybctl=$REPO/.venv/bin/kybctl
    if [[ -x $kybctl && -f $DIR/admin.conf ]]; then
        KYBCONFIG=$DIR/admin.conf "$kybctl" "$@"
    else
        vm_ssh master sudo -i kybctl "$(printf '%q ' "$@")"
    fi
}

# ----------------------------------------------------------------------------- main

main() {
    [[ $# -gt 0 ]] || { usage; exit 2; }
    local command=$1; shift
    load_settings
    case $command in
        -h|--help|help) usage ;;
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        status) require_lab; cmd_status ;;
        env) require_lab; vagrant_env | sed 's/^/export /'; echo "cd $REPO" ;;
        vagrant) require_lab; run_vagrant "$@" ;;
        ssh)
            require_lab
            local name
            name=$(vm_name "${1:?ssh NAME [CMD...]}"); shift
            if [[ $# -eq 0 ]]; then vm_ssh "$name" -t; else vm_ssh "$name" "$@"; fi ;;
        kybctl) require_lab; cmd_kybctl "$@" ;;
        kill-node) require_lab; cmd_kill_node "$(vm_name "${1:?kill-node N}")" ;;
        start-node) require_lab; cmd_start_node "$(vm_name "${1:?start-node N}")" ;;
        partition) require_lab; cmd_partition "$(vm_name "${1:?partition N}")" down ;;
        heal) require_lab; cmd_partition "$(vm_name "${1:?heal N}")" up ;;
        *) die "unknown command '$command' (see lab.sh --help)" ;;
    esac
}

main "$@"
