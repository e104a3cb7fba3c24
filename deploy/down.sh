#!/usr/bin/env bash
# Undo deploy/up.sh and leave the machine as up.sh found it: our processes (kubelet, master and its etcd,
# registry, and containerd if up.sh started it), our containers, pod network namespaces, UTS mounts and
# images (only in our containerd namespace), the pod bridge, our routes and iptables chain, the
# net.ipv4.ip_forward value, and the state dir. Safe to run twice, and after a partial up.sh.
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
# shellcheck source=deploy/lib/local.sh
. "$REPO/deploy/lib/local.sh"

[[ $(id -u) -eq 0 ]] || die "run as root"
if [[ ! -d $DIR ]]; then say "nothing to stop: no $DIR"; exit 0; fi

ctr_ns() { ctr --connect-timeout 2s -a "$CONTAINERD" -n "$CTR_NS" "$@"; }

if [[ -f $ENV_FILE ]]; then
    # The kubelet first, so that nothing restarts the containers we delete.
    "$PROVISION" stop kubelet --env "$ENV_FILE" --kill || true
fi
if [[ " $KUBELET_ARGS " != *" --no-proxy "* && -x $VENV/bin/python ]]; then
    # The kubelet's service proxy programmed this host's iptables (KYB-* chains and their jumps).
    "$VENV/bin/python" -c 'import asyncio; from kubelet.proxy.iptables import Iptables; asyncio.run(Iptables().remove_all())' \
        || say "warning: could not remove the service proxy's iptables rules"
fi

if containerd_answers; then
    say "removing our containers and images (containerd namespace $CTR_NS)"
    for id in $(ctr_ns containers ls -q 2>/dev/null); do
        ctr_ns tasks rm -f "$id" >/dev/null 2>&1 || true
        ctr_ns containers rm "$id" >/dev/null 2>&1 || true
        rm -f "/run/containerd/s/$(printf '%s' "$CONTAINERD/$CTR_NS/$id" | sha256sum | cut -d' ' -f1)"
    done
    for image in $(ctr_ns images ls -q 2>/dev/null); do ctr_ns images rm "$image" >/dev/null 2>&1 || true; done
    # Content is garbage-collected asynchronously; the namespace can go once it is empty.
    for _ in $(seq 1 50); do
        ctr --connect-timeout 2s -a "$CONTAINERD" namespaces rm "$CTR_NS" >/dev/null 2>&1 && break
        ctr --connect-timeout 2s -a "$CONTAINERD" namespaces ls -q 2>/dev/null | grep -qx "$CTR_NS" || break
        sleep 0.1
    done
fi

# Pod sandboxes: UTS mounts and network namespaces are named after our containerd namespace.
for uts in /run/kybernetes/uts/"$CTR_NS"-*; do
    [[ -e $uts ]] || continue
    umount "$uts" 2>/dev/null || true
    rm -f "$uts"
done
while read -r netns; do
    ip netns del "$netns" 2>/dev/null || true
done < <(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$CTR_NS-" || true)
rmdir "/run/containerd/runc/$CTR_NS" 2>/dev/null || true
for cgroup in /sys/fs/cgroup/*/"$CTR_NS" /sys/fs/cgroup/"$CTR_NS"; do
    if [[ -d $cgroup ]]; then find "$cgroup" -depth -type d -exec rmdir {} \; 2>/dev/null || true; fi
done

uninstall_kubeconfig
if [[ -f $ENV_FILE ]]; then
    for component in master registry; do "$PROVISION" stop "$component" --env "$ENV_FILE" || true; done
    if [[ -e $DIR/started-containerd ]]; then
        "$PROVISION" stop containerd --env "$ENV_FILE" || true
        # containerd removes its gRPC socket on exit but leaves the ttrpc one.
        rm -f "$CONTAINERD" "$CONTAINERD.ttrpc"
    fi
fi
# Anything of ours still alive (an embedded etcd whose master was SIGKILLed, say): by pid, from /proc.
for proc in /proc/[0-9]*; do
    case $(cat "$proc/comm" 2>/dev/null) in etcd|docker-registry|containerd|containerd-shim*|python*) ;; *) continue ;; esac
    if tr '\0' ' ' 2>/dev/null < "$proc/cmdline" | grep -qF -- "$DIR/"; then
        kill -KILL "${proc#/proc/}" 2>/dev/null || true
    fi
done

if [[ -d /sys/class/net/$BRIDGE/bridge ]]; then ip link del "$BRIDGE"; fi
while read -r target; do
    umount -l "$target" 2>/dev/null || true
done < <(awk -v prefix="$DIR/" 'index($5, prefix) == 1 {print $5}' /proc/self/mountinfo | sort -r)

guard_down    # (also reads host.env: CREATED_DIRS)
rm -rf "$DIR"
remove_created_dirs
say "stopped; $DIR removed"
