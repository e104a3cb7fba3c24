#!/usr/bin/env bash
# One command to a running single-machine Kybernetes cluster (Debian 12 / Ubuntu, as root):
#
#   1. installs what is missing (apt packages and the .venv; deploy/lib/install.sh, shared with test.sh);
#   2. guards the host: blackhole routes for the pod and service ranges, and a FORWARD chain that drops
#      anything routed into or out of the pod bridge (pods talk to each other and to this host only);
#   3. builds the sample images offline and starts, through deploy/provision/provision.sh (the same path
#      as the namespace lab and the Vagrant VMs): a registry with the images pushed, the master with its
#      embedded etcd, and one kubelet on the local containerd (started by us if none is running);
#      The master serves mutual TLS only; its admin credentials go to ~/.kyb/config (kybctl's default) unless
#      that file holds something else, and the kubelet joins with a one-hour join token;
#   4. deploys the sample app (kyb/hello:v1, 3 replicas), waits until they are Ready, and prints how to
#      reach them and what to try next.
#
# Running it again reuses what is already there. deploy/down.sh undoes all of it.
#
# Settings (environment; down.sh reads them back from the state dir):
#   KYB_LOCAL_DIR (/var/lib/kybernetes/local)   state, logs, pids, etcd data, images
#   KYB_MASTER_PORT (6443)  KYB_REGISTRY_PORT (5000)   both on 127.0.0.1
#   KYB_CONTAINERD_ADDRESS (/run/containerd/containerd.sock)  KYB_CONTAINERD_NAMESPACE (kyb)
#   KYB_POD_BRIDGE (kyb0)  KYB_CLUSTER_CIDR (10.244.0.0/16)  KYB_SERVICE_CIDR (10.96.0.0/16)
#   KYB_NODE_NAME (the hostname)  KYB_REPLICAS (3)  KYB_VENV (the repository's .venv)
#   KYB_KUBELET_ARGS (extra kubelet flags, e.g. --no-proxy)
#   KYB_KUBECONFIG (~/.kyb/config)   where kybctl's credentials go
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
# shellcheck source=deploy/lib/local.sh
. "$REPO/deploy/lib/local.sh"

[[ $(id -u) -eq 0 ]] || die "run as root (it installs packages, creates a bridge and routes)"

say "1/4 installing what is missing"
KYB_VENV=$VENV "$PROVISION" install

[[ -e $(dirname "$DIR") ]] || PARENT_CREATED=yes
mkdir -p "$DIR"
save_settings
record_host_state

say "2/4 guarding the host (blackholes for $CLUSTER_CIDR and $SERVICE_CIDR, chain $CHAIN)"
guard_up

say "3/4 starting the cluster"
containerd=$CONTAINERD
if [[ -e $DIR/started-containerd ]] || ! containerd_answers; then
    # Nobody runs containerd at that address: we start one (our config and root, CRI off) and remember it.
    touch "$DIR/started-containerd"
    containerd=own=$CONTAINERD
fi
"$PROVISION" configure --role all --name "$NODE" --master "127.0.0.1:$MASTER_PORT" \
    --registry "127.0.0.1:$REGISTRY_PORT" --etcd embedded --cluster-cidr "$CLUSTER_CIDR" \
    --service-cidr "$SERVICE_CIDR" --containerd "$containerd" --containerd-namespace "$CTR_NS" \
    --pod-bridge "$BRIDGE" --etc "$DIR/etc" --state "$DIR/state" --run "$DIR/run" --logs "$DIR/log" \
    --venv "$VENV" --kubelet-args "$KUBELET_ARGS"
for component in registry master; do
    "$PROVISION" start "$component" --env "$ENV_FILE" --timeout 60
done
"$PROVISION" images --env "$ENV_FILE"
install_kubeconfig
if [[ ! -s $DIR/etc/join-token && ! -d $DIR/state/kubelet/pki/$NODE ]]; then
    "$PROVISION" join-token --env "$ENV_FILE" --out "$DIR/etc/join-token" --ttl 1h
fi
if [[ -e $DIR/started-containerd ]]; then
    "$PROVISION" start containerd --env "$ENV_FILE" --timeout 30
fi
"$PROVISION" start kubelet --env "$ENV_FILE" --timeout 90

say "4/4 deploying the sample app: $REPLICAS replicas of kyb/hello:v1"
kybctl apply -f - <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: $REPLICAS
  selector:
    matchLabels: {app: hello}
  template:
    metadata:
      labels: {app: hello}
    spec:
      containers:
      - name: hello
        image: 127.0.0.1:$REGISTRY_PORT/kyb/hello:v1
        ports:
        - containerPort: 8080
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
EOF
if ! "$VENV/bin/python" "$REPO/deploy/lib/cluster.py" rollout --kubeconfig "$ADMIN_CONFIG" --name hello \
        --timeout 180; then
    kybctl get deployments,replicasets,pods -o wide >&2 || true
    die "the sample app did not become Ready (logs: $DIR/log)"
fi

pods=$("$VENV/bin/python" "$REPO/deploy/lib/cluster.py" pods --kubeconfig "$ADMIN_CONFIG" --selector app=hello)
first_ip=$(awk -F'\t' '$2 != "-" {print $2; exit}' <<< "$pods")
answer=$(curl -fsS --max-time 5 "http://$first_ip:8080/" || echo "(no answer yet)")
first_pod=$(awk -F'\t' '{print $1; exit}' <<< "$pods")
indented=${pods//$'\n'/$'\n    '}
config_hint=""
[[ $(cat "$DIR/installed-kubeconfig" 2>/dev/null) == "$USER_KUBECONFIG" ]] || config_hint=$ADMIN_CONFIG
cat <<EOF

Kybernetes is up: master $SERVER (mutual TLS; etcd embedded, data in $DIR/state/master),
registry 127.0.0.1:$REGISTRY_PORT, node $NODE on containerd $CONTAINERD (namespace $CTR_NS), pods on bridge $BRIDGE.
Admin credentials: $([[ -n $config_hint ]] && echo "$ADMIN_CONFIG ($USER_KUBECONFIG holds another cluster's)" \
    || echo "$USER_KUBECONFIG (a copy of $ADMIN_CONFIG)").

The sample app (deployment/hello):
    $indented

Reach a pod:
    curl http://$first_ip:8080/
    -> $answer

Try next:
    . $VENV/bin/activate$([[ -z $config_hint ]] || printf '\n    export KYBCONFIG=%s' "$config_hint")
    kybctl get nodes
    kybctl get deploy,rs,pods -o wide
    kybctl describe deployment hello
    kybctl scale deployment/hello --replicas=5
    kybctl set image deployment/hello hello=127.0.0.1:$REGISTRY_PORT/kyb/hello:v2
    kybctl rollout status deployment/hello
    kybctl rollout undo deployment/hello
    kybctl logs $first_pod
    kybctl exec $first_pod -- env
    kybctl expose deployment/hello --type=NodePort --port 8080
    kybctl get svc hello                      # then: curl <this host's IP>:<the NodePort>
    kybctl get pods -w
    kybctl token create --ttl 1h              # to join another machine: kyb-kubelet --master ... --token ...
When done: $REPO/deploy/down.sh
EOF
