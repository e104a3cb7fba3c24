#!/usr/bin/env bash
# Provision one Vagrant VM of the lab (called by the Vagrantfile, as root, with the repository at /vagrant):
#
#   vagrant.sh master NAME IP [PEERS]   etcd, registry and kyb-master as systemd units; sample images pushed
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
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
PROVISION=$HERE/provision.sh
VENV=/opt/kybernetes/venv
SERVER_TOKEN=/etc/kybernetes/server-token
ETCD_PKI=/var/lib/kybernetes/etcd-pki
# What the first master hands to the others (through the host): the server token, the etcd CA, the client.
SECRETS=(server-token ca.crt ca.key client.crt client.key)

role=${1:?role: master or node}
name=${2:?node name}
ip=${3:?the private IP of this VM}
extra=${4:-}

die() { echo "vagrant.sh: $*" >&2; exit 1; }

KYB_VENV=$VENV KYB_VENV_EXTRAS="" "$PROVISION" install

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
        --run-registry "$([[ $name == "$first" ]] && echo yes || echo no)" --venv "$VENV"
    "$PROVISION" units
    # The first member alone has no quorum: its API answers once the second master's member is up.
    [[ $name == "$first" ]] || "$PROVISION" wait master --timeout 180
    if [[ $name == "$last" ]]; then
        "$PROVISION" images
        [[ -s /etc/kybernetes/join-token ]] || "$PROVISION" join-token --out /etc/kybernetes/join-token --ttl 24h
    fi
    MASTERS_SEEN=$masters
}

case $role in
    master)
        if [[ -n $extra ]]; then
            master_several "$extra"
        else
            "$PROVISION" configure --role master --name "$name" --ip "$ip" --master "$ip:6443" \
                --registry "$ip:5000" --etcd separate --venv "$VENV"
            "$PROVISION" units
            "$PROVISION" wait master --timeout 120
            "$PROVISION" images
            [[ -s /etc/kybernetes/join-token ]] || "$PROVISION" join-token --out /etc/kybernetes/join-token --ttl 24h
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
            --registry "$first_master:5000" --containerd own --venv "$VENV"
        if [[ -s /tmp/kyb-join-token ]]; then
            install -m 600 /tmp/kyb-join-token /etc/kybernetes/join-token
            rm -f /tmp/kyb-join-token
        fi
        [[ -s /etc/kybernetes/join-token || -d /var/lib/kybernetes/kubelet/pki/$name ]] ||
            die "no join token (the master VM makes it: vagrant up the master(s) first)"
        "$PROVISION" units
        MASTERS_SEEN=$masters ;;
    *) echo "vagrant.sh: role must be master or node (got '$role')" >&2; exit 2 ;;
esac

{
    [[ $role != master ]] || echo "export KYBCONFIG=/var/lib/kybernetes/master/admin.conf"
    echo "export PATH=$VENV/bin:\$PATH"
} > /etc/profile.d/kybernetes.sh
echo "==> $name ($role) provisioned; kybctl talks to $MASTERS_SEEN"
