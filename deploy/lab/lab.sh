#!/usr/bin/env bash
# A Kybernetes cluster on one machine: M master nodes and N worker nodes, each a network namespace on a
# shared bridge (like VMs on a private network). Run as root.
#
#   lab.sh up [--workers N] [--masters M] [--no-kubelet]
#                                  bring the lab up (3 workers, 1 master by default; --masters 1..5, 3 for
#                                  HA: see below); reuses what exists
#   lab.sh down                    stop everything and remove all the lab created
#   lab.sh status                  machines, links, processes, the leader, etcd members, `kybctl get nodes`
#   lab.sh env                     prints `export KYBCONFIG=…` (eval "$(lab.sh env)"): admin credentials
#                                  (every link is mutual TLS); with several masters `server:` lists them all
#   lab.sh kybctl ARGS…            kybctl against the lab's master(s)
#   lab.sh etcdctl ARGS…           etcdctl (API 3) against the lab's etcd member(s), with its client certificate
#   lab.sh leader [--wait S]       prints the number of the master that runs the control loops (its health
#                                  service reports kyb.leader SERVING); fails when none or several do
#                                  (with --wait: after waiting up to S seconds for exactly one)
#
# Faults. N is a worker's number; M a master's number (1..masters; 1 when left out):
#   lab.sh kill-node N | start-node N         power cut (every process of the node, containers included,
#                                             and its link) / power on (containerd, then the kubelet)
#   lab.sh stop-kubelet N | start-kubelet N   SIGTERM the node's kubelet / start it again
#   lab.sh partition N | heal N               drop / restore all traffic of a worker
#   lab.sh partition master [M] | heal master [M]
#                                             the same for master M (etcd member included); `masterM` works too
#   lab.sh kill-master [M] | start-master [M] [--no-wait]
#                                             SIGKILL master M's kyb-master (its etcd member keeps running) /
#                                             start it again (waits until it serves unless --no-wait)
#   lab.sh stop-master [M]                    SIGTERM master M's kyb-master (a leader hands over at once)
#   lab.sh pause-master [M] | resume-master [M]  SIGSTOP / SIGCONT master M's kyb-master (a stalled process)
#   lab.sh stop-etcd [M] [--kill] | start-etcd [M] [--no-wait]
#                                             SIGTERM (SIGKILL) the etcd member of master M / start it again
#                                             (waits until it reports healthy: needs a quorum)
#
# Topology (defaults; KYB_LAB_SUBNET=10.99.0):
#   host: bridge klbr0 10.99.0.1/24, guard chain KL-FWD, blackholes for the pod and service ranges,
#         routes to every node's podCIDR via its node IP (deploy/lib/cluster.py host-routes)
#   kl-master 10.99.0.10: etcd (127.0.0.1:2379 inside), registry :5000, kyb-master :6443
#   kl-nodeN  10.99.0.(10+N): containerd (own root/state/socket, CRI off, containerd namespace kl-nodeN)
#             and kyb-kubelet (pod bridge klcni0, pods kl-nodeN-*, host-gw routes to the other nodes)
# With --masters M > 1 (docs/lab-ha.md): master 1 keeps kl-master and 10.99.0.10; master K >= 2 is
# kl-masterK at 10.99.0.(11-K) (master2 .9, master3 .8). Each master machine runs one member of an M-member
# etcd cluster (peers and clients on its IP, clients also on 127.0.0.1; one etcd CA) and a kyb-master using
# every member (its own first) with the server token LAB/server-token. The registry stays on master 1.
# Kubelets and the admin credentials (LAB/admin.conf) list every master.
# Every node is provisioned by deploy/provision/provision.sh exactly as a Vagrant VM is, but its
# components are launched with `provision.sh start --netns` instead of systemd.
#
# Settings (environment, read by `up`; later commands find them in the lab dir):
#   KYB_LAB_DIR (/var/lib/kybernetes/lab)   KYB_LAB_PREFIX (kl: names of netns, links, chains)
#   KYB_LAB_SUBNET (10.99.0)                KYB_LAB_CLUSTER_CIDR (10.244.0.0/16)
#   KYB_LAB_SERVICE_CIDR (10.96.0.0/16)     KYB_LAB_MASTER_ARGS, KYB_LAB_KUBELET_ARGS (extra flags)
#   KYB_VENV (the repository's .venv)
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SELF")/../.." && pwd)
PROVISION=$REPO/deploy/provision/provision.sh
PROTO=""  # our routing protocol number, from host.env
CLUSTER=$REPO/deploy/lib/cluster.py
LAB=${KYB_LAB_DIR:-/var/lib/kybernetes/lab}
BLACKHOLE_METRIC_BASE=4000

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'lab: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$SELF" | sed -e '$d' -e 's/^# \{0,1\}//'; }

# ----------------------------------------------------------------------------- settings

load_settings() {
    if [[ -f $LAB/lab.env ]]; then
        # shellcheck disable=SC1091
        . "$LAB/lab.env"
    else
        P=${KYB_LAB_PREFIX:-kl}
        SUBNET=${KYB_LAB_SUBNET:-10.99.0}
        CLUSTER_CIDR=${KYB_LAB_CLUSTER_CIDR:-10.244.0.0/16}
        SERVICE_CIDR=${KYB_LAB_SERVICE_CIDR:-10.96.0.0/16}
        VENV=${KYB_VENV:-$REPO/.venv}
        WORKERS=0
        MASTERS=1
        MASTER_ARGS=${KYB_LAB_MASTER_ARGS:-}
        KUBELET_ARGS=${KYB_LAB_KUBELET_ARGS:-}
    fi
    [[ $P =~ ^[a-z][a-z0-9]{0,7}$ ]] || die "KYB_LAB_PREFIX must be 1-8 lowercase letters/digits (got '$P')"
    [[ $SUBNET =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "KYB_LAB_SUBNET must be the first three octets (got '$SUBNET')"
    MASTERS=${MASTERS:-1}  # a lab.env from before several masters
    BRIDGE=${P}br0
    CHAIN=${P^^}-FWD
    TAG=kyb-lab-$P
    MASTER_IP=$SUBNET.10
    PY=$VENV/bin/python
    derive_masters
}

derive_masters() {  # every master's API address, in order (one master: SERVER), and the etcd members
    SERVERS="" ETCD_PEERS=""
    local name
    for name in $(masters); do
        SERVERS+=${SERVERS:+,}$(node_ip "$name"):6443
        ETCD_PEERS+=${ETCD_PEERS:+,}$name=$(node_ip "$name")
    done
}

save_settings() {
    mkdir -p "$LAB"
    cat > "$LAB/lab.env" <<EOF
# The lab's settings, written by lab.sh up.
P=$P
SUBNET=$SUBNET
CLUSTER_CIDR=$CLUSTER_CIDR
SERVICE_CIDR=$SERVICE_CIDR
VENV=$VENV
WORKERS=$WORKERS
MASTERS=$MASTERS
MASTER_ARGS="$MASTER_ARGS"
KUBELET_ARGS="$KUBELET_ARGS"
EOF
}

# A machine is a worker's number (1, 2, …) or a master's name: "master" (master 1), "master2", … "master5".
master_name() { if [[ $1 == 1 ]]; then echo master; else echo "master$1"; fi; }
master_number() { local m=${1#master}; echo "${m:-1}"; }
is_master() { [[ $1 == master* ]]; }
masters() { local m; for ((m = 1; m <= MASTERS; m++)); do master_name "$m"; done; }
node_netns() { if is_master "$1"; then echo "$P-$1"; else echo "$P-node$1"; fi; }
node_ip() {
    if is_master "$1"; then echo "$SUBNET.$((11 - $(master_number "$1")))"; else echo "$SUBNET.$((10 + $1))"; fi
}
host_veth() {
    if [[ $1 == master ]]; then echo "${P}vm"; elif is_master "$1"; then echo "${P}vm${1#master}"
    else echo "${P}v$1"; fi
}
node_dir() { if is_master "$1"; then echo "$LAB/$1"; else echo "$LAB/node$1"; fi; }
node_env() { echo "$(node_dir "$1")/etc/kybernetes.env"; }
node_label() { if is_master "$1"; then echo "$1"; else echo "node$1"; fi; }
ctr_namespace() { echo "$P-node$1"; }

check_node() {
    local n=$1
    if [[ $n =~ ^master([2-9]?)$ ]]; then
        (( $(master_number "$n") <= MASTERS )) && return 0
    elif [[ $n =~ ^[0-9]+$ ]] && (( n >= 1 && n <= WORKERS )); then
        return 0
    fi
    die "no node '$n' in this lab (workers 1..$WORKERS; master, or master 1..$MASTERS)"
}
check_worker() { ! is_master "$1" || die "$2 needs a worker number"; check_node "$1"; }

master_arg() {  # "" | M | masterM -> master M's machine name (master 1 when left out)
    local m=${1:-1}
    [[ $m == master* ]] && m=$(master_number "$m")
    if ! [[ $m =~ ^[0-9]+$ ]] || (( m < 1 || m > MASTERS )); then die "no master '${1:-}' in this lab (1..$MASTERS)"; fi
    master_name "$m"
}

machine_of() {  # N | master [M] | masterM -> the machine (a worker's number or a master's name)
    case $# in
        1) if [[ $1 == master* ]]; then master_arg "$1"; else check_node "$1"; echo "$1"; fi ;;
        2) [[ $1 == master ]] || die "expected: N, master [M] or masterM (got '$*')"; master_arg "$2" ;;
        *) die "expected: N, master [M] or masterM (got '$*')" ;;
    esac
}

parse_master_command() {  # [M|masterM] [--kill] [--no-wait] -> MACHINE, KILL, WAIT (options the command allows)
    local allowed=$1; shift
    local which=""
    KILL=no WAIT=yes
    while [[ $# -gt 0 ]]; do
        case $1 in
            --kill) [[ $allowed == *kill* ]] || die "--kill is not an option here"; KILL=yes ;;
            --no-wait) [[ $allowed == *no-wait* ]] || die "--no-wait is not an option here"; WAIT=no ;;
            master) ;;  # `kill-master master 2` reads like `partition master 2`
            *) [[ -z $which ]] || die "one master at a time (got '$which' and '$1')"; which=$1 ;;
        esac
        shift
    done
    MACHINE=$(master_arg "$which")
}

provision() { "$PROVISION" "$@"; }

lab_exists() { [[ -f $LAB/lab.env ]]; }
require_lab() { lab_exists || die "no lab at $LAB (run: lab.sh up)"; }


# ----------------------------------------------------------------------------- host guard

free_route_proto() {  # route_proto of $1, or the next number that no route on this host carries
    ip -N -4 route show table all | "$PY" -c 'import re, sys
from kubelet.routes import free_route_proto
used = {int(n) for n in re.findall(r"proto (\d+)", sys.stdin.read())}
print(free_route_proto(sys.argv[1], used=used))' "$1"
}

guarded_ranges() { printf '%s\n' 10.244.0.0/16 10.96.0.0/16 "$CLUSTER_CIDR" "$SERVICE_CIDR" | sort -u; }

guard_up() {
    # Before any node exists: nothing of the lab may ever be routed off this host.
    local host=$LAB/host.env lock
    # One lab at a time picks its routing protocol number and adds its blackholes (which then mark the
    # number as taken), so that two labs never share one: each lab's route sync deletes the routes of
    # its number that it does not want.
    exec {lock}>/run/kybernetes-lab-routes.lock
    flock "$lock"
    if [[ ! -f $host ]]; then
        local filter_existed=no proto
        nft list table ip filter >/dev/null 2>&1 && filter_existed=yes
        proto=$(free_route_proto "$TAG") || die "cannot pick a routing protocol number"
        printf 'FILTER_TABLE_EXISTED=%s\nIP_FORWARD=%s\nPROTO=%s\n' "$filter_existed" \
            "$(cat /proc/sys/net/ipv4/ip_forward)" "$proto" > "$host.tmp"
        mv "$host.tmp" "$host"
    fi
    # shellcheck disable=SC1090
    . "$host"
    local cidr metric=$((BLACKHOLE_METRIC_BASE + PROTO))
    # Our own blackhole entries (a metric of our own): never confused with anyone else's, removed on down.
    for cidr in $(guarded_ranges); do
        if [[ -z $(ip -4 route show exact "$cidr" type blackhole proto "$PROTO" metric "$metric" 2>/dev/null) ]]; then
            ip route add blackhole "$cidr" proto "$PROTO" metric "$metric" 2>/dev/null ||
                [[ -n $(ip -4 route show exact "$cidr" type blackhole proto "$PROTO" metric "$metric") ]] ||
                die "cannot add blackhole route $cidr"
        fi
    done
    exec {lock}>&-
    iptables -N "$CHAIN" 2>/dev/null || true
    iptables -F "$CHAIN"
    # Node-to-node frames cross the bridge (and, with br_netfilter, FORWARD): allowed. Routed: dropped.
    iptables -A "$CHAIN" -i "$BRIDGE" -o "$BRIDGE" -m physdev --physdev-is-bridged -j ACCEPT
    iptables -A "$CHAIN" -i "$BRIDGE" -j DROP
    iptables -A "$CHAIN" -o "$BRIDGE" -j DROP
    iptables -C FORWARD -j "$CHAIN" 2>/dev/null || iptables -I FORWARD 1 -j "$CHAIN"
}

guard_down() {
    local host=$LAB/host.env
    [[ -f $host ]] || return 0
    # shellcheck disable=SC1090
    . "$host"
    local cidr metric=$((BLACKHOLE_METRIC_BASE + PROTO))
    # Every route we own: host-gw routes to pods (also gone with the bridge) and our blackholes.
    while read -r cidr; do
        if [[ -n $cidr ]]; then ip route del "$cidr" proto "$PROTO" 2>/dev/null || true; fi
    done < <(ip -4 route show proto "$PROTO" | awk '$1 != "blackhole" {print $1}')
    for cidr in $(guarded_ranges); do
        ip route del blackhole "$cidr" proto "$PROTO" metric "$metric" 2>/dev/null || true
    done
    while iptables -D FORWARD -j "$CHAIN" 2>/dev/null; do :; done
    iptables -F "$CHAIN" 2>/dev/null || true
    iptables -X "$CHAIN" 2>/dev/null || true
    # iptables-nft creates `table ip filter` on first use and never deletes it: drop it if we did and it is empty.
    if [[ $FILTER_TABLE_EXISTED == no ]] && nft list table ip filter >/dev/null 2>&1 &&
       ! nft list table ip filter | grep -vqE '^\s*(table |chain |type |policy |\}|$)'; then
        nft delete table ip filter 2>/dev/null || true
    fi
    if [[ $(cat /proc/sys/net/ipv4/ip_forward) != "$IP_FORWARD" ]]; then
        say "warning: net.ipv4.ip_forward is $(cat /proc/sys/net/ipv4/ip_forward), was $IP_FORWARD (not changed by the lab)"
    fi
}

# ----------------------------------------------------------------------------- machines

bridge_up() {
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
        # A pinned MAC: otherwise the bridge takes the lowest port MAC, which changes as ports come and go.
        local octets
        IFS=. read -r -a octets <<< "$SUBNET"
        ip link set "$BRIDGE" address "02:00:$(printf '%02x:%02x:%02x' "${octets[@]}"):01"
        ip addr add "$SUBNET.1/24" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
}

machine_up() {  # the netns of a node: eth0 on the bridge, its IP, a default route to the host
    local n=$1 ns veth ip
    ns=$(node_netns "$n"); veth=$(host_veth "$n"); ip=$(node_ip "$n")
    if [[ ! -e /run/netns/$ns ]]; then
        ip netns add "$ns"
        ip link add "$veth" type veth peer name eth0 netns "$ns"
        ip link set "$veth" master "$BRIDGE"
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$ip/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" route add default via "$SUBNET.1"
        # A new netns copies the host's ip_forward; nodes route for their pods, the master does not.
        if is_master "$n"; then
            ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=0
        else
            ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
            if [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
                ip netns exec "$ns" sysctl -qw net.bridge.bridge-nf-call-iptables=1
            fi
        fi
    fi
    link_apply "$n"
}

link_apply() {  # the host side of a node's cable is up unless the node is off or partitioned
    local n=$1 dir
    dir=$(node_dir "$n")
    if [[ -e $dir/off || -e $dir/partitioned ]]; then
        ip link set "$(host_veth "$n")" down
    else
        ip link set "$(host_veth "$n")" up
    fi
}

configure_master() {
    local name=$1 d ip several=()
    d=$(node_dir "$name"); ip=$(node_ip "$name")
    if (( MASTERS > 1 )); then
        # One etcd member per master machine, every master with the same server token; the registry on master 1.
        several=(--master-listen "$ip:6443" --etcd-peers "$ETCD_PEERS" --server-token-file "$LAB/server-token"
                 --run-registry "$([[ $name == master ]] && echo yes || echo no)")
    fi
    provision configure --role master --name "$name" --ip "$ip" --master "$SERVERS" \
        --registry "$MASTER_IP:5000" --etcd separate --cluster-cidr "$CLUSTER_CIDR" --service-cidr "$SERVICE_CIDR" \
        --etc "$d/etc" --state "$d/state" --run "$d/run" --logs "$d/log" --venv "$VENV" \
        --master-args "$MASTER_ARGS" "${several[@]}" 2>/dev/null
}

# The admin credentials: master 1's file (one master), or a copy of it listing every master (several).
admin_config() {
    if (( MASTERS > 1 )); then echo "$LAB/admin.conf"; else echo "$LAB/master/state/master/admin.conf"; fi
}

write_admin_config() {  # several masters: master 1's admin credentials with every master as `server:`
    (( MASTERS > 1 )) || return 0
    "$PY" "$CLUSTER" kubeconfig --kubeconfig "$LAB/master/state/master/admin.conf" --server "$SERVERS" \
        --out "$(admin_config)"
}

make_server_token() {  # several masters: one server token for all (it seals the cluster CA in etcd)
    [[ ! -s $LAB/server-token ]] || return 0
    (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$LAB/server-token.tmp")
    mv "$LAB/server-token.tmp" "$LAB/server-token"
}

make_etcd_pki() {  # several masters: one etcd CA (made on master 1) and client certificate, copied to the others
    local first=$LAB/master/state/etcd-pki name dest hosts=() entry file
    for entry in ${ETCD_PEERS//,/ }; do hosts+=(--host "${entry#*=}"); done
    "$PY" -m kybernetes.master.store.etcdtls "$first" "${hosts[@]}"
    for name in $(masters); do
        [[ $name != master ]] || continue
        dest=$(node_dir "$name")/state/etcd-pki
        mkdir -p "$dest"
        chmod 700 "$dest"
        # Each member issues its own serving certificate from this CA at start (provision.sh run etcd).
        for file in ca.crt ca.key client.crt client.key; do cp -p "$first/$file" "$dest/$file"; done
    done
}

start_masters() {  # etcd members (all at once: a member waits for a quorum), the registry, the kyb-masters
    local name
    for name in $(masters); do
        provision start etcd --env "$(node_env "$name")" --netns "$(node_netns "$name")" --no-wait
    done
    for name in $(masters); do
        provision wait etcd --env "$(node_env "$name")" --netns "$(node_netns "$name")" --timeout 60
    done
    provision start registry --env "$(node_env master)" --netns "$P-master" --timeout 30
    for name in $(masters); do
        provision start master --env "$(node_env "$name")" --netns "$(node_netns "$name")" --no-wait
    done
    for name in $(masters); do
        provision wait master --env "$(node_env "$name")" --netns "$(node_netns "$name")" --timeout 90
    done
}

configure_node() {
    local n=$1 d
    d=$(node_dir "$n")
    # Every node joins with the token the master made at `up` (docs/identity.md).
    provision configure --role node --name "node$n" --ip "$(node_ip "$n")" --master "$SERVERS" \
        --join-token-file "$LAB/join-token" \
        --registry "$MASTER_IP:5000" --containerd own --containerd-namespace "$(ctr_namespace "$n")" \
        --pod-bridge "${P}cni0" --etc "$d/etc" --state "$d/state" --run "$d/run" --logs "$d/log" \
        --venv "$VENV" --kubelet-args "$KUBELET_ARGS" 2>/dev/null
}

kubelet_available() { "$PY" -c 'import kybernetes.kubelet.main' >/dev/null 2>&1; }

start_node() {  # containerd, then the kubelet (waiting for Ready only when asked)
    local n=$1 wait=$2
    rm -f "$(node_dir "$n")/off"
    link_apply "$n"
    provision start containerd --env "$(node_env "$n")" --netns "$(node_netns "$n")" --timeout 30
    if [[ ! -e $LAB/no-kubelet ]]; then
        provision start kubelet --env "$(node_env "$n")" --netns "$(node_netns "$n")" --timeout 60 \
            --no-wait
        [[ $wait == no ]] || provision wait kubelet --env "$(node_env "$n")" --netns "$(node_netns "$n")" \
            --timeout 60
    fi
}

host_routes_pid() {
    local pid
    pid=$(cat "$LAB/host-routes.pid" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -qF -- "--tag $TAG" && echo "$pid"
    return 0
}

start_host_routes() {
    [[ -n $(host_routes_pid) ]] && return 0
    # The host reaches every node's pods through that node (host-gw), like the kubelets do.
    nohup setsid "$PY" "$CLUSTER" host-routes --kubeconfig "$(admin_config)" --tag "$TAG" --proto "$PROTO" \
        >>"$LAB/host-routes.log" 2>&1 </dev/null &
    echo $! > "$LAB/host-routes.pid"
}

cmd_up() {
    local workers=3 kubelet=yes masters=""
    while [[ $# -gt 0 ]]; do
        case $1 in
            --workers) workers=${2:-}; shift 2 || die "--workers needs a number" ;;
            --masters) masters=${2:-}; shift 2 || die "--masters needs a number" ;;
            --no-kubelet) kubelet=no; shift ;;
            *) die "up: unknown option $1" ;;
        esac
    done
    [[ $workers =~ ^[0-9]+$ && $workers -ge 1 && $workers -le 200 ]] || die "--workers must be 1..200 (got '$workers')"
    [[ $(id -u) -eq 0 ]] || die "run as root"
    local tool
    for tool in ip nsenter iptables nft containerd ctr etcd docker-registry skopeo curl jq; do
        command -v "$tool" >/dev/null || die "$tool is missing (run: deploy/provision/provision.sh install)"
    done
    [[ -x $PY ]] || die "no virtualenv at $VENV (run: deploy/provision/provision.sh install)"
    if lab_exists && (( workers < WORKERS )); then
        die "the lab has $WORKERS workers; run down first to shrink it"
    fi
    # An existing lab keeps its masters (an etcd cluster does not grow by restarting it).
    if lab_exists; then masters=${masters:-$MASTERS}; else masters=${masters:-1}; fi
    [[ $masters =~ ^[1-5]$ ]] || die "--masters must be 1..5 (got '$masters')"
    if lab_exists && (( masters != MASTERS )); then
        die "the lab has $MASTERS master(s); run down first to change that"
    fi
    WORKERS=$workers MASTERS=$masters
    derive_masters
    if [[ ! -e $(dirname "$LAB") ]]; then mkdir -p "$LAB"; touch "$LAB/parent-created"; fi
    mkdir -p "$LAB"
    if [[ $kubelet == yes ]] && ! kubelet_available; then
        say "warning: kybernetes.kubelet.main is not importable from $VENV: the workers run containerd only"
        kubelet=no
    fi
    if [[ $kubelet == no ]]; then touch "$LAB/no-kubelet"; else rm -f "$LAB/no-kubelet"; fi
    save_settings
    local started=$SECONDS n
    guard_up
    bridge_up
    local name
    for name in $(masters); do machine_up "$name"; done
    for ((n = 1; n <= WORKERS; n++)); do machine_up "$n"; done

    for name in $(masters); do configure_master "$name"; done
    for ((n = 1; n <= WORKERS; n++)); do configure_node "$n"; done
    if (( MASTERS > 1 )); then make_server_token; make_etcd_pki; fi
    start_masters
    write_admin_config
    local menv=$LAB/master/etc/kybernetes.env
    provision images --env "$menv" --netns "$P-master"
    # A 24-hour token, made again when the one on disk is older than 12 hours (nodes that joined keep their
    # certificates; a node whose state dir is new needs a live token).
    if [[ -z $(find "$LAB/join-token" -mmin -720 2>/dev/null) ]]; then
        provision join-token --env "$menv" --netns "$P-master" --out "$LAB/join-token" --ttl 24h
    fi
    start_host_routes
    for ((n = 1; n <= WORKERS; n++)); do start_node "$n" no; done
    if [[ $kubelet == yes ]]; then
        "$PY" "$CLUSTER" nodes-ready --kubeconfig "$(admin_config)" --count "$WORKERS" --timeout 90
    fi
    if (( MASTERS > 1 )); then
        local leader
        leader=$(leader_number --wait 30)
        say "lab up in $((SECONDS - started))s: $MASTERS masters (${SERVERS//:6443/}; master $leader leads)," \
            "$WORKERS workers; try:"
    else
        say "lab up in $((SECONDS - started))s: master $MASTER_IP, $WORKERS workers; try:"
    fi
    # shellcheck disable=SC2016  # the $( ) is for the reader's shell
    printf '    eval "$(%s env)"; kybctl get nodes\n' "$SELF" >&2
}

# ----------------------------------------------------------------------------- faults

node_pids() {  # every process of a worker: daemons (node netns), containers (cgroups, pod netns)
    local n=$1 ns cg
    ns=$(node_netns "$n")
    {
        ip netns pids "$ns" 2>/dev/null || true
        local pod
        while read -r pod; do ip netns pids "$pod" 2>/dev/null || true; done < <(pod_netns "$n")
        for cg in /sys/fs/cgroup/*/"$(ctr_namespace "$n")" /sys/fs/cgroup/"$(ctr_namespace "$n")"; do
            if [[ -d $cg ]]; then find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null || true; fi
        done
    } | sort -un
}

pod_netns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$(ctr_namespace "$1")-" || true; }

kill_all() {  # SIGKILL until none is left (a kubelet may be spawning ctr while we kill)
    local n=$1 pids deadline=$((SECONDS + 15))
    while pids=$(node_pids "$n") && [[ -n $pids ]]; do
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        (( SECONDS < deadline )) || die "node $n still has processes: ${pids//$'\n'/ }"
        sleep 0.05
    done
}

cmd_kill_node() {
    local n=$1
    check_worker "$n" kill-node
    touch "$(node_dir "$n")/off"
    link_apply "$n"          # a powered-off machine does not answer pings either
    kill_all "$n"
    say "node$n is off (no process left); start it with: lab.sh start-node $n"
}

cmd_partition() {
    local n
    n=$(machine_of "$@")
    touch "$(node_dir "$n")/partitioned"
    link_apply "$n"
    say "$(node_label "$n") partitioned (host side of its link down)"
}

cmd_heal() {
    local n
    n=$(machine_of "$@")
    rm -f "$(node_dir "$n")/partitioned"
    link_apply "$n"
    say "$(node_label "$n") healed"
}

# Masters: each fault touches one process of one master machine, by its pid file (provision.sh).
master_component() {  # COMMAND COMPONENT ALLOWED-OPTIONS ARGS…
    local command=$1 component=$2 allowed=$3
    shift 3
    parse_master_command "$allowed" "$@"
    local env ns pid
    env=$(node_env "$MACHINE"); ns=$(node_netns "$MACHINE")
    case $command in
        start)
            local no_wait=()
            [[ $WAIT == yes ]] || no_wait=(--no-wait)
            provision start "$component" --env "$env" --netns "$ns" --timeout 60 "${no_wait[@]}" ;;
        stop)
            local kill=()
            [[ $KILL == no ]] || kill=(--kill)
            provision stop "$component" --env "$env" "${kill[@]}" ;;
        pause|resume)
            pid=$(cat "$(node_dir "$MACHINE")/run/$component.pid" 2>/dev/null || true)
            [[ $pid =~ ^[0-9]+$ && -d /proc/$pid ]] || die "$MACHINE: $component is not running"
            kill "-$([[ $command == pause ]] && echo STOP || echo CONT)" "$pid"
            say "$MACHINE: $component (pid $pid) $([[ $command == pause ]] && echo paused || echo resumed)" ;;
    esac
}

leader_number() {  # [--wait S]: the number of the master whose kyb.leader health is SERVING
    local seconds=0
    case ${1:-} in --wait) seconds=${2:?--wait needs seconds} ;; "") ;; *) die "leader: unknown option $1" ;; esac
    "$PY" "$CLUSTER" leader --kubeconfig "$(admin_config)" --servers "$SERVERS" --wait "$seconds"
}

etcdctl_lab() {  # etcdctl with the client certificate, against every member (one member: inside master 1)
    local pki=$LAB/master/state/etcd-pki endpoints="" name
    for name in $(masters); do endpoints+=${endpoints:+,}https://$(node_ip "$name"):2379; done
    local netns=()
    (( MASTERS > 1 )) || { endpoints=https://127.0.0.1:2379; netns=(nsenter "--net=/run/netns/$P-master"); }
    # Defaults through the environment; etcdctl refuses a variable that a flag also sets, so a flag given
    # (e.g. --endpoints of one member) replaces its variable.
    local -A defaults=([endpoints]=$endpoints [cacert]=$pki/ca.crt [cert]=$pki/client.crt [key]=$pki/client.key)
    local env=(ETCDCTL_API=3) flag arg given
    for flag in "${!defaults[@]}"; do
        given=no
        for arg in "$@"; do [[ $arg != "--$flag" && $arg != "--$flag="* ]] || given=yes; done
        [[ $given == yes ]] || env+=("ETCDCTL_${flag^^}=${defaults[$flag]}")
    done
    env "${env[@]}" "${netns[@]}" etcdctl "$@"
}

# ----------------------------------------------------------------------------- status

cmd_status() {
    local n ns link pids
    printf '%-8s %-14s %-6s %-12s %s\n' NODE IP LINK STATE PROCESSES
    for n in $(masters) $(seq 1 "$WORKERS"); do
        ns=$(node_netns "$n")
        link=$(ip -o link show "$(host_veth "$n")" 2>/dev/null | grep -q '[<,]UP[,>]' && echo up || echo down)
        local state=on dir
        dir=$(node_dir "$n")
        [[ -e $dir/partitioned ]] && state=partitioned
        [[ -e $dir/off ]] && state=off
        pids=$(provision status --env "$(node_env "$n")" 2>/dev/null | awk 'NR > 1 {printf "%s=%s ", $1, $2}')
        printf '%-8s %-14s %-6s %-12s %s\n' "$(node_label "$n")" "$(node_ip "$n")" "$link" "$state" "$pids"
    done
    echo "host-routes: pid $(host_routes_pid || true)"
    if [[ -f $LAB/host.env ]]; then ip -4 route show proto "$(. "$LAB/host.env"; echo "$PROTO")" | grep -v blackhole || true; fi
    echo "leader: master $(leader_number 2>/dev/null || echo "? (none answered as the only leader)")"
    if (( MASTERS > 1 )); then
        etcdctl_lab --command-timeout 2s endpoint status -w table 2>&1 || true
    fi
    KYBCONFIG=$(admin_config) "$VENV/bin/kybctl" --request-timeout 3s get nodes 2>&1 || true
}

# ----------------------------------------------------------------------------- teardown

clean_worker() {
    local n=$1 ns address cns id d
    ns=$(node_netns "$n"); cns=$(ctr_namespace "$n"); d=$(node_dir "$n")
    provision stop kubelet --env "$d/etc/kybernetes.env" --kill >/dev/null 2>&1 || true
    if [[ -e /run/netns/$ns && -f $d/etc/kybernetes.env ]]; then
        address=$d/run/containerd/containerd.sock
        # A killed node's containerd is started again to delete its containers cleanly (like a reboot).
        if ! ctr --connect-timeout 200ms -a "$address" version >/dev/null 2>&1; then
            rm -f "$d/off"
            provision start containerd --env "$d/etc/kybernetes.env" --netns "$ns" --timeout 20 >/dev/null 2>&1 || true
        fi
        for id in $(ctr --connect-timeout 2s -a "$address" -n "$cns" containers ls -q 2>/dev/null); do
            ctr --connect-timeout 2s -a "$address" -n "$cns" tasks rm -f "$id" >/dev/null 2>&1 || true
            ctr --connect-timeout 2s -a "$address" -n "$cns" containers rm "$id" >/dev/null 2>&1 || true
            # A SIGKILLed shim leaves its socket (docs/lab-network.md §9, docs/containerd.md §8).
            rm -f "/run/containerd/s/$(printf '%s' "$address/$cns/$id" | sha256sum | cut -d' ' -f1)"
        done
        provision stop containerd --env "$d/etc/kybernetes.env" >/dev/null 2>&1 || true
    fi
    kill_all "$n"
    local uts
    for uts in /run/kybernetes/uts/"$cns"-*; do
        [[ -e $uts ]] || continue
        umount "$uts" 2>/dev/null || true
        rm -f "$uts"
    done
    local pod
    while read -r pod; do ip netns del "$pod" 2>/dev/null || true; done < <(pod_netns "$n")
    # Shared between containerds: the runc root and the cgroup parents of our namespace (docs/lab-network.md §4).
    rmdir "/run/containerd/runc/$cns" 2>/dev/null || true
    local cg
    for cg in /sys/fs/cgroup/*/"$cns" /sys/fs/cgroup/"$cns"; do
        if [[ -d $cg ]]; then find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true; fi
    done
    return 0
}

unmount_lab() {
    local target
    while read -r target; do
        umount -l "$target" 2>/dev/null || true
    done < <(awk -v prefix="$LAB/" 'index($5, prefix) == 1 {print $5}' /proc/self/mountinfo | sort -r)
}

cmd_down() {
    if ! lab_exists; then say "no lab at $LAB"; return 0; fi
    local n pid
    pid=$(host_routes_pid)
    if [[ -n $pid ]]; then kill -TERM "$pid" 2>/dev/null || true; fi
    for ((n = 1; n <= WORKERS; n++)); do clean_worker "$n"; done
    local c name left
    for name in $(masters); do
        # A paused master would never see its SIGTERM: let it run to be stopped.
        provision stop master --env "$(node_env "$name")" --kill >/dev/null 2>&1 || true
        for c in registry etcd; do
            provision stop "$c" --env "$(node_env "$name")" >/dev/null 2>&1 || true
        done
        left=$(ip netns pids "$(node_netns "$name")" 2>/dev/null || true)
        # shellcheck disable=SC2086
        [[ -z $left ]] || kill -KILL $left 2>/dev/null || true
    done
    if [[ -n $pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
    unmount_lab
    # Delete the cables explicitly: a netns (and so its veth peer) is freed asynchronously by the kernel.
    for n in $(masters) $(seq 1 "$WORKERS"); do ip link del "$(host_veth "$n")" 2>/dev/null || true; done
    local ns
    while read -r ns; do
        ip netns del "$ns" 2>/dev/null || true
    done < <(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$P-(master[0-9]*|node[0-9]+)(-|$)" || true)
    ip link del "$BRIDGE" 2>/dev/null || true     # the nodes' host veths went with their netns
    guard_down
    local parent_created=no
    [[ ! -e $LAB/parent-created ]] || parent_created=yes
    rm -rf "$LAB"
    [[ $parent_created == no ]] || rmdir "$(dirname "$LAB")" 2>/dev/null || true
    say "lab down"
}

# ----------------------------------------------------------------------------- main

main() {
    [[ $# -gt 0 ]] || { usage; exit 2; }
    local command=$1; shift
    load_settings
    case $command in
        -h|--help|help) usage ;;
        up) cmd_up "$@" ;;
        down) cmd_down ;;
        status) require_lab; cmd_status ;;
        env) require_lab; echo "export KYBCONFIG=$(admin_config)" ;;
        kybctl) require_lab; KYBCONFIG=$(admin_config) exec "$VENV/bin/kybctl" "$@" ;;
        etcdctl) require_lab; etcdctl_lab "$@" ;;
        leader) require_lab; leader_number "$@" ;;
        kill-node) require_lab; cmd_kill_node "${1:?kill-node N}" ;;
        start-node)
            require_lab; check_worker "${1:?start-node N}" start-node
            start_node "$1" yes ;;
        stop-kubelet)
            require_lab; check_worker "${1:?stop-kubelet N}" stop-kubelet
            provision stop kubelet --env "$(node_env "$1")" ;;
        start-kubelet)
            require_lab; check_worker "${1:?start-kubelet N}" start-kubelet
            provision start kubelet --env "$(node_env "$1")" --netns "$(node_netns "$1")" --timeout 60 ;;
        partition) require_lab; cmd_partition "$@" ;;
        heal) require_lab; cmd_heal "$@" ;;
        kill-master) require_lab; master_component stop master kill "$@" --kill ;;
        stop-master) require_lab; master_component stop master "" "$@" ;;
        start-master) require_lab; master_component start master no-wait "$@" ;;
        pause-master) require_lab; master_component pause master "" "$@" ;;
        resume-master) require_lab; master_component resume master "" "$@" ;;
        stop-etcd) require_lab; master_component stop etcd kill "$@" ;;
        start-etcd) require_lab; master_component start etcd no-wait "$@" ;;
        *) die "unknown command '$command' (see lab.sh --help)" ;;
    esac
}

main "$@"
