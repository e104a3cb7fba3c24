# shellcheck shell=bash
# shellcheck disable=SC2034  # the settings are used by the scripts that source this file
# Settings and host guard shared by deploy/up.sh and deploy/down.sh (source it; REPO must be set).
#
# up.sh saves the settings in $DIR/local.env and the host's state before it changed anything in
# $DIR/host.env, so down.sh undoes exactly what up.sh did, whatever the environment says then.

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'kybernetes: %s\n' "$*" >&2; exit 1; }

DIR=${KYB_LOCAL_DIR:-/var/lib/kybernetes/local}
if [[ -f $DIR/local.env ]]; then
    # shellcheck disable=SC1091
    . "$DIR/local.env"
else
    MASTER_PORT=${KYB_MASTER_PORT:-6443}
    REGISTRY_PORT=${KYB_REGISTRY_PORT:-5000}
    CONTAINERD=${KYB_CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}
    CTR_NS=${KYB_CONTAINERD_NAMESPACE:-kyb}
    BRIDGE=${KYB_POD_BRIDGE:-kyb0}
    CLUSTER_CIDR=${KYB_CLUSTER_CIDR:-10.244.0.0/16}
    SERVICE_CIDR=${KYB_SERVICE_CIDR:-10.96.0.0/16}
    NODE=${KYB_NODE_NAME:-$(hostname)}
    REPLICAS=${KYB_REPLICAS:-3}
    VENV=${KYB_VENV:-$REPO/.venv}
    KUBELET_ARGS=${KYB_KUBELET_ARGS:-}
    # Where up.sh puts the admin credentials for kybctl (only when that file is free or was ours).
    USER_KUBECONFIG=${KYB_KUBECONFIG:-${KYBCONFIG:-$HOME/.kyb/config}}
fi
PROVISION=$REPO/deploy/provision/provision.sh
ENV_FILE=$DIR/etc/kybernetes.env
SERVER=127.0.0.1:$MASTER_PORT
# The master writes its admin credentials here (0600): a client certificate in system:masters.
ADMIN_CONFIG=$DIR/state/master/admin.conf
CHAIN=${BRIDGE^^}-FWD
TAG=kyb-local-$BRIDGE
BLACKHOLE_METRIC_BASE=4000

kybctl() { "$VENV/bin/kybctl" --kubeconfig "$ADMIN_CONFIG" "$@"; }

save_settings() {
    [[ -f $DIR/local.env ]] && return 0
    cat > "$DIR/local.env" <<EOF
# Written by deploy/up.sh; read by up.sh and down.sh.
MASTER_PORT=$MASTER_PORT
REGISTRY_PORT=$REGISTRY_PORT
CONTAINERD=$CONTAINERD
CTR_NS=$CTR_NS
BRIDGE=$BRIDGE
CLUSTER_CIDR=$CLUSTER_CIDR
SERVICE_CIDR=$SERVICE_CIDR
NODE=$NODE
REPLICAS=$REPLICAS
VENV=$VENV
KUBELET_ARGS="$KUBELET_ARGS"
USER_KUBECONFIG=$USER_KUBECONFIG
EOF
}

free_route_proto() {  # route_proto of $1, or the next number that no route on this host carries
    ip -N -4 route show table all | "$VENV/bin/python" -c 'import re, sys
from kubelet.routes import free_route_proto
used = {int(n) for n in re.findall(r"proto (\d+)", sys.stdin.read())}
print(free_route_proto(sys.argv[1], used=used))' "$1"
}

# Directories that up.sh (or what it starts) may create outside $DIR: removed by down.sh when they did not
# exist before and are empty again (containerd's socket dir, the kubelet's /run/kybernetes, $DIR's parent).
shared_dirs() { printf '%s\n' "$(dirname "$DIR")" "$(dirname "$CONTAINERD")" /run/kybernetes; }

record_host_state() {  # once, before the first change; $DIR itself was just created
    [[ -f $DIR/host.env ]] && return 0
    local filter_existed=no nat_existed=no created=() dir
    nft list table ip filter >/dev/null 2>&1 && filter_existed=yes
    nft list table ip nat >/dev/null 2>&1 && nat_existed=yes
    while read -r dir; do
        if [[ $dir == "$(dirname "$DIR")" ]]; then
            [[ -n ${PARENT_CREATED:-} ]] && created+=("$dir")
        elif [[ ! -e $dir ]]; then
            created+=("$dir")
        fi
    done < <(shared_dirs)
    printf 'FILTER_TABLE_EXISTED=%s\nNAT_TABLE_EXISTED=%s\nIP_FORWARD=%s\nPROTO=%s\nCREATED_DIRS="%s"\n' \
        "$filter_existed" "$nat_existed" "$(cat /proc/sys/net/ipv4/ip_forward)" "$(free_route_proto "$TAG")" \
        "${created[*]}" > "$DIR/host.env"
}

remove_created_dirs() {
    local dir
    # shellcheck disable=SC2086  # a list of paths without spaces (ours)
    for dir in ${CREATED_DIRS:-}; do
        if [[ -d $dir ]]; then find "$dir" -depth -type d -empty -delete 2>/dev/null || true; fi
    done
}

delete_table_if_empty() {  # iptables-nft creates `table ip filter/nat` on first use and never deletes them
    local table=$1
    nft list table ip "$table" >/dev/null 2>&1 || return 0
    if ! nft list table ip "$table" | grep -vqE '^\s*(table |chain |type |policy |\}|$)'; then
        nft delete table ip "$table" 2>/dev/null || true
    fi
}

guarded_ranges() { printf '%s\n' 10.244.0.0/16 10.96.0.0/16 "$CLUSTER_CIDR" "$SERVICE_CIDR" | sort -u; }

guard_up() {
    # shellcheck disable=SC1091
    . "$DIR/host.env"
    local cidr metric=$((BLACKHOLE_METRIC_BASE + PROTO))
    # Blackholes of our own (own metric and protocol): the more specific pod-bridge route still wins,
    # and nothing for the pod or service ranges ever leaves through the default route.
    for cidr in $(guarded_ranges); do
        # A route's identity is its prefix and metric: look for ours by both.
        if [[ -z $(ip -4 route show exact "$cidr" type blackhole proto "$PROTO" metric "$metric") ]]; then
            ip route add blackhole "$cidr" proto "$PROTO" metric "$metric" ||
                die "cannot add the blackhole $cidr metric $metric: $(ip -4 route show exact "$cidr" | tr '\n' ';')"
        fi
    done
    iptables -N "$CHAIN" 2>/dev/null || true
    iptables -F "$CHAIN"
    iptables -A "$CHAIN" -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
    iptables -A "$CHAIN" -i "$BRIDGE" -j DROP
    iptables -A "$CHAIN" -o "$BRIDGE" -j DROP
    iptables -C FORWARD -j "$CHAIN" 2>/dev/null || iptables -I FORWARD 1 -j "$CHAIN"
}

guard_down() {
    [[ -f $DIR/host.env ]] || return 0
    # shellcheck disable=SC1091
    . "$DIR/host.env"
    local cidr metric=$((BLACKHOLE_METRIC_BASE + PROTO))
    for cidr in $(guarded_ranges); do
        ip route del blackhole "$cidr" proto "$PROTO" metric "$metric" 2>/dev/null || true
    done
    while iptables -D FORWARD -j "$CHAIN" 2>/dev/null; do :; done
    iptables -F "$CHAIN" 2>/dev/null || true
    iptables -X "$CHAIN" 2>/dev/null || true
    [[ $FILTER_TABLE_EXISTED == yes ]] || delete_table_if_empty filter
    [[ ${NAT_TABLE_EXISTED:-yes} == yes ]] || delete_table_if_empty nat
    # The CNI bridge plugin (isGateway) turns on forwarding in the netns where the kubelet runs.
    if [[ $(cat /proc/sys/net/ipv4/ip_forward) != "$IP_FORWARD" ]]; then
        echo "$IP_FORWARD" > /proc/sys/net/ipv4/ip_forward
    fi
}

containerd_answers() { ctr --connect-timeout 1s -a "$CONTAINERD" version >/dev/null 2>&1; }

# kybctl's default credentials file gets the admin config when it is free (or was put there by us before);
# a file holding another cluster's credentials is left alone (up.sh then says `export KYBCONFIG=...`).
install_kubeconfig() {
    local mine=""
    mine=$(cat "$DIR/installed-kubeconfig" 2>/dev/null || true)
    if [[ -e $USER_KUBECONFIG && $mine != "$USER_KUBECONFIG" ]]; then
        say "leaving $USER_KUBECONFIG alone (it is not ours); credentials: $ADMIN_CONFIG"
        return 0
    fi
    [[ -d $(dirname "$USER_KUBECONFIG") ]] || { mkdir -p -m 700 "$(dirname "$USER_KUBECONFIG")"; \
        echo "$(dirname "$USER_KUBECONFIG")" > "$DIR/installed-kubeconfig-dir"; }
    install -m 600 "$ADMIN_CONFIG" "$USER_KUBECONFIG"
    echo "$USER_KUBECONFIG" > "$DIR/installed-kubeconfig"
}

uninstall_kubeconfig() {
    local mine dir
    mine=$(cat "$DIR/installed-kubeconfig" 2>/dev/null || true)
    [[ -n $mine ]] && rm -f "$mine"
    dir=$(cat "$DIR/installed-kubeconfig-dir" 2>/dev/null || true)
    [[ -z $dir ]] || rmdir "$dir" 2>/dev/null || true
    rm -f "$DIR/installed-kubeconfig" "$DIR/installed-kubeconfig-dir"
}
