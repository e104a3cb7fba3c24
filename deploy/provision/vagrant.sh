#!/usr/bin/env bash
# Provision one Vagrant VM of the lab (called by the Vagrantfile, as root, with the repository at /vagrant):
#
#   vagrant.sh master NAME IP          etcd, registry and kyb-master as systemd units; sample images pushed
#   vagrant.sh node NAME IP MASTER_IP  containerd and kyb-kubelet as systemd units, pointed at the master
#
# Identity: the master VM makes a join token (/etc/kybernetes/join-token, 0600); the Vagrantfile copies it to
# the host (.vagrant/kyb-join-token) after the master is up and uploads it to each node as /tmp/kyb-join-token,
# which this script moves to /etc/kybernetes/join-token (0600) for the kubelet. Only the master VM holds the
# admin credentials (/var/lib/kybernetes/master/admin.conf: `sudo kybctl ...` there).
#
# The same provision.sh steps as the namespace lab (install, configure, then components), with systemd
# running them (Restart=on-failure) instead of `provision.sh start`. The virtualenv lives in
# /opt/kybernetes/venv (outside the synced folder); `kybctl` is put on every VM's PATH.
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
PROVISION=$HERE/provision.sh
VENV=/opt/kybernetes/venv

role=${1:?role: master or node}
name=${2:?node name}
ip=${3:?the private IP of this VM}
master_ip=${4:-$ip}

KYB_VENV=$VENV KYB_VENV_EXTRAS="" "$PROVISION" install

case $role in
    master)
        "$PROVISION" configure --role master --name "$name" --ip "$ip" --master "$ip:6443" \
            --registry "$ip:5000" --etcd separate --venv "$VENV"
        "$PROVISION" units
        "$PROVISION" wait master --timeout 120
        "$PROVISION" images
        [[ -s /etc/kybernetes/join-token ]] || "$PROVISION" join-token --out /etc/kybernetes/join-token --ttl 24h ;;
    node)
        # The kubelet gets a containerd of its own (CRI off); the packaged one is not needed here.
        if [[ -d /run/systemd/system ]]; then systemctl disable --now containerd.service >/dev/null 2>&1 || true; fi
        "$PROVISION" configure --role node --name "$name" --ip "$ip" --master "$master_ip:6443" \
            --registry "$master_ip:5000" --containerd own --venv "$VENV"
        if [[ -s /tmp/kyb-join-token ]]; then
            install -m 600 /tmp/kyb-join-token /etc/kybernetes/join-token
            rm -f /tmp/kyb-join-token
        fi
        [[ -s /etc/kybernetes/join-token || -d /var/lib/kybernetes/kubelet/pki/$name ]] ||
            { echo "vagrant.sh: no join token (the master VM makes it: vagrant up master first)" >&2; exit 1; }
        "$PROVISION" units ;;
    *) echo "vagrant.sh: role must be master or node (got '$role')" >&2; exit 2 ;;
esac

{
    [[ $role != master ]] || echo "export KYBCONFIG=/var/lib/kybernetes/master/admin.conf"
    echo "export PATH=$VENV/bin:\$PATH"
} > /etc/profile.d/kybernetes.sh
echo "==> $name ($role) provisioned; kybctl talks to $master_ip:6443"
