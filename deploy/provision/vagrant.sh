#!/usr/bin/env bash
# Provision one Vagrant VM of the lab (called by the Vagrantfile, as root, with the repository at /vagrant):
#
#   vagrant.sh master NAME IP [PEERS]   etcd, registry and kyb-master as systemd units; sample images pushed;
#                                       pod routes and Service rules (kyb-hostnet)
#   vagrant.sh node NAME IP MASTERS     containerd and kyb-kubelet as systemd units, pointed at the master(s)
#
# MASTERS is the master's IP, or every master's IP comma-separated (KYB_MASTERS=3 in the Vagrantfile).
# PEERS (several masters, docs/lab-ha.md): every master as NAME=IP, comma-separated, in order, e.g.
# master=192.168.56.10,master2=192.168.56.9,master3=192.168.56.8. Each master VM then runs one member of
# one etcd cluster (provision.sh configure --etcd-peers) and a kyb-master on all members with one server
# token; the registry runs on the first master only. The first master makes the server token
# (/etc/kybernetes/server-token) and the etcd CA and client certificate (/var/lib/kybernetes/etcd-pki/); the
# Vagrantfile copies them through the host (.vagrant/kyb-master-secrets/, 0600) to the other masters as
# /tmp/kyb-secret-<file>, which this script moves into place. The first master cannot wait for its API
# (etcd has no quorum until the second member is up); every other one does, and the last one pushes the
# sample images and makes the join token.
#
# Identity: the (last) master VM makes a join token (/etc/kybernetes/join-token, 0600); the Vagrantfile copies
# it to the host (.vagrant/kyb-join-token) after that master is up and uploads it to each node as
# /tmp/kyb-join-token, which this script moves to /etc/kybernetes/join-token (0600) for the kubelet. Only the
# master VMs hold admin credentials (/var/lib/kybernetes/master/admin.conf: `sudo kybctl ...` there).
#
# The same provision.sh steps as the namespace lab (install, configure, then components), with systemd
# running them (Restart=on-failure) instead of `provision.sh start`. The virtualenv lives in
# /opt/kybernetes/venv (outside the synced folder); `kybctl` is put on every VM's PATH.
#
# The masters run no kubelet; each runs kyb-hostnet (deploy/lib/cluster.py host-routes --services): routes to
# every Node's pods and the Services' rules, so pods and ClusterIPs answer there too. On the nodes, pod traffic
# that leaves the cluster range is masqueraded (kyb-pod-egress), so pods reach the host and the other VMs.
#
# Offline: when the host filled the wheelhouse (deploy/vagrant/wheelhouse.sh; the synced folder carries it),
# pip installs from it with --no-index; a box with every Debian package (deploy/vagrant/build-box.sh) never
# calls apt.
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
PROVISION=$HERE/provision.sh
REPO=$(cd "$HERE/../.." && pwd)
VENV=/opt/kybernetes/venv
CLUSTER_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
SERVER_TOKEN=/etc/kybernetes/server-token
ETCD_PKI=/var/lib/kybernetes/etcd-pki
# What the first master hands to the others (through the host): the server token, the etcd CA, the client.
SECRETS=(server-token ca.crt ca.key client.crt client.key)

# etcd's raft timing (provision.sh configure --etcd-heartbeat-ms/--etcd-election-ms): the Vagrantfile sets it,
# larger under software emulation, where a 50 ms heartbeat cannot be kept.
ETCD_TIMING=(--etcd-heartbeat-ms "${KYB_ETCD_HEARTBEAT_MS:-50}" --etcd-election-ms "${KYB_ETCD_ELECTION_MS:-600}")

role=${1:?role: master or node}
name=${2:?node name}
ip=${3:?the private IP of this VM}
extra=${4:-}

started=$SECONDS
say() { printf '==> [%3ss] %s: %s\n' "$((SECONDS - started))" "$name" "$*"; }
die() { echo "vagrant.sh: $*" >&2; exit 1; }

if [[ -f $REPO/.wheelhouse/.lock-sha256 ]]; then
    export KYB_WHEELHOUSE=$REPO/.wheelhouse
    say "installing (pip from the wheelhouse, offline)"
else
    say "installing"
fi
KYB_VENV=$VENV KYB_VENV_EXTRAS="" "$PROVISION" install

unit() {  # unit NAME DESCRIPTION AFTER simple|oneshot COMMAND: a systemd unit of ours, enabled and (re)started
    local unit_name=$1 description=$2 after=$3 type=$4 command=$5 restart
    [[ -d /run/systemd/system ]] || { say "no systemd: $unit_name not installed"; return 0; }
    restart=$'Restart=always\nRestartSec=2'
    [[ $type != oneshot ]] || restart="RemainAfterExit=yes"
    printf '%s\n' "# Written by deploy/provision/vagrant.sh." "[Unit]" "Description=$description" "Wants=$after" \
        "After=$after" "" "[Service]" "Type=$type" "ExecStart=$command" "$restart" "" "[Install]" \
        "WantedBy=multi-user.target" > "/etc/systemd/system/$unit_name.service"
    systemctl daemon-reload
    systemctl enable "$unit_name.service" >/dev/null 2>&1
    systemctl restart "$unit_name.service"
}

service_route() {  # a route for the service range, so that a ClusterIP reached from this VM itself is DNATed
    # The VMs have no default route on libvirt: without a route, connect() to a ClusterIP fails at the route
    # lookup, before the nat OUTPUT rules could rewrite it (docs/lab-network.md pitfall 6). The route points at
    # the private network; a packet no Service rule rewrites goes nowhere further.
    local dev
    dev=$(ip -o -4 addr show | awk -v ip="$ip" '{split($4, a, "/")} a[1] == ip {print $2; exit}')
    [[ -n $dev ]] || { say "no interface holds $ip: no route for $SERVICE_CIDR"; return 0; }
    unit kyb-service-route "Kybernetes: a route for the service range" network-online.target oneshot \
        "/sbin/ip route replace $SERVICE_CIDR dev $dev"
}

host_network() {  # on a master: routes to every Node's pods (host-gw) and the Services' rules, from its own API
    # Forwarding: a NodePort of the master DNATs to a pod on a node, which the master then routes.
    printf 'net.ipv4.ip_forward = 1\n' > /etc/sysctl.d/90-kybernetes.conf
    sysctl -q -p /etc/sysctl.d/90-kybernetes.conf
    service_route
    unit kyb-hostnet "Kybernetes pod routes and Service rules" kyb-master.service simple \
        "$VENV/bin/python $REPO/deploy/lib/cluster.py host-routes --services --tag kyb-vm --server $ip:6443 --kubeconfig /var/lib/kybernetes/master/admin.conf"
}

pod_network() {  # on a node: forwarding, br_netfilter, and pod traffic leaving the cluster range masqueraded
    # br_netfilter lets the Service rules see traffic between two pods of one bridge. Pod traffic to anything
    # outside the cluster range (the host, a master's registry) leaves with this VM's address; on libvirt the
    # VMs have no default route, so nothing goes beyond the private network.
    printf 'br_netfilter\noverlay\n' > /etc/modules-load.d/kybernetes.conf
    modprobe br_netfilter 2>/dev/null || true
    printf 'net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\n' > /etc/sysctl.d/90-kybernetes.conf
    sysctl -q -p /etc/sysctl.d/90-kybernetes.conf
    service_route
    local rule="POSTROUTING -s $CLUSTER_CIDR ! -d $CLUSTER_CIDR -j MASQUERADE"
    unit kyb-pod-egress "Kybernetes: masquerade pod traffic leaving the cluster range" network-online.target \
        oneshot "/bin/sh -c 'iptables -w -t nat -C $rule 2>/dev/null || iptables -w -t nat -A $rule'"
}

master_several() {  # one member of an etcd cluster per master VM
    local peers=$1 entry entries=() names=() ips=() masters=""
    IFS=, read -r -a entries <<< "$peers"
    for entry in "${entries[@]}"; do
        names+=("${entry%%=*}"); ips+=("${entry#*=}"); masters+=${masters:+,}${entry#*=}:6443
    done
    local first=${names[0]} last=${names[-1]} ip_of_first=${ips[0]} file
    mkdir -p /etc/kybernetes "$ETCD_PKI"
    chmod 700 "$ETCD_PKI"
    if [[ $name == "$first" ]]; then
        [[ -s $SERVER_TOKEN ]] ||
            (umask 077 && "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$SERVER_TOKEN")
        local hosts=()
        for entry in "${ips[@]}"; do hosts+=(--host "$entry"); done
        "$VENV/bin/python" -m kybernetes.master.store.etcdtls "$ETCD_PKI" "${hosts[@]}"
    else
        for file in "${SECRETS[@]}"; do
            [[ -s /tmp/kyb-secret-$file ]] || continue
            if [[ $file == server-token ]]; then install -m 600 "/tmp/kyb-secret-$file" "$SERVER_TOKEN"
            elif [[ $file == *.crt ]]; then install -m 644 "/tmp/kyb-secret-$file" "$ETCD_PKI/$file"
            else install -m 600 "/tmp/kyb-secret-$file" "$ETCD_PKI/$file"; fi
            rm -f "/tmp/kyb-secret-$file"
        done
        [[ -s $SERVER_TOKEN && -s $ETCD_PKI/ca.key && -s $ETCD_PKI/client.key ]] ||
            die "no server token or etcd CA from the first master (vagrant up $first first)"
    fi
    "$PROVISION" configure --role master --name "$name" --ip "$ip" --master "$masters" --master-listen "$ip:6443" \
        --registry "$ip_of_first:5000" --etcd separate --etcd-peers "$peers" --server-token-file "$SERVER_TOKEN" \
        --run-registry "$([[ $name == "$first" ]] && echo yes || echo no)" --venv "$VENV" "${ETCD_TIMING[@]}"
    say "starting etcd, $([[ $name == "$first" ]] && echo "the registry, ")the master"
    "$PROVISION" units
    # The first member alone has no quorum: its API answers once the second master's member is up.
    [[ $name == "$first" ]] || "$PROVISION" wait master --timeout 300
    if [[ $name == "$last" ]]; then
        say "pushing the sample images"
        "$PROVISION" images
        [[ -s /etc/kybernetes/join-token ]] || "$PROVISION" join-token --out /etc/kybernetes/join-token --ttl 24h
    fi
    host_network
    MASTERS_SEEN=$masters
}

case $role in
    master)
        if [[ -n $extra ]]; then
            master_several "$extra"
        else
            "$PROVISION" configure --role master --name "$name" --ip "$ip" --master "$ip:6443" \
                --registry "$ip:5000" --etcd separate --cluster-cidr "$CLUSTER_CIDR" --venv "$VENV" "${ETCD_TIMING[@]}"
            say "starting etcd, the registry and the master"
            "$PROVISION" units
            "$PROVISION" wait master --timeout 300
            say "pushing the sample images"
            "$PROVISION" images
            [[ -s /etc/kybernetes/join-token ]] || "$PROVISION" join-token --out /etc/kybernetes/join-token --ttl 24h
            host_network
            MASTERS_SEEN=$ip:6443
        fi ;;
    node)
        master_ips=${extra:-$ip}
        masters="" first_master=${master_ips%%,*}
        IFS=, read -r -a each <<< "$master_ips"
        for entry in "${each[@]}"; do masters+=${masters:+,}$entry:6443; done
        # The kubelet gets a containerd of its own (CRI off); the packaged one is not needed here.
        if [[ -d /run/systemd/system ]]; then systemctl disable --now containerd.service >/dev/null 2>&1 || true; fi
        "$PROVISION" configure --role node --name "$name" --ip "$ip" --master "$masters" \
            --registry "$first_master:5000" --cluster-cidr "$CLUSTER_CIDR" --containerd own --venv "$VENV"
        if [[ -s /tmp/kyb-join-token ]]; then
            install -m 600 /tmp/kyb-join-token /etc/kybernetes/join-token
            rm -f /tmp/kyb-join-token
        fi
        [[ -s /etc/kybernetes/join-token || -d /var/lib/kybernetes/kubelet/pki/$name ]] ||
            die "no join token (the master VM makes it: vagrant up the master(s) first)"
        pod_network
        say "starting containerd and the kubelet"
        "$PROVISION" units
        MASTERS_SEEN=$masters ;;
    *) echo "vagrant.sh: role must be master or node (got '$role')" >&2; exit 2 ;;
esac

{
    [[ $role != master ]] || echo "export KYBCONFIG=/var/lib/kybernetes/master/admin.conf"
    echo "export PATH=$VENV/bin:\$PATH"
} > /etc/profile.d/kybernetes.sh
say "provisioned ($role); kybctl talks to $MASTERS_SEEN"
