#!/usr/bin/env bash
# Provision a Kybernetes machine: the one path shared by the Vagrant VMs, the namespace lab and deploy/up.sh.
#
#   provision.sh install                        apt packages + virtualenv (deploy/lib/install.sh)
#   provision.sh configure --role ROLE [...]    write ETC/kybernetes.env (+ containerd.toml, registry.yml)
#   provision.sh run COMPONENT                  exec one component in the foreground (systemd's ExecStart)
#   provision.sh start COMPONENT [--netns NS]   no-systemd mode: run it in the background (pid and log file),
#                                               then wait until it is ready (unless --no-wait); reuses a
#                                               running one
#   provision.sh stop COMPONENT [--kill]        SIGTERM (grace, then SIGKILL) or SIGKILL, by pid file
#   provision.sh wait COMPONENT [--netns NS]    wait until the component answers
#   provision.sh status                         the role's components and their pids
#   provision.sh units [--dir DIR]              systemd units (Restart=on-failure), enabled and started
#                                               (with --dir: only written there, for review and tests)
#   provision.sh images [--netns NS]            build the sample images offline and push them to the registry
#   provision.sh join-token --out FILE [--ttl D] (on a master) make a join token for kubelets, written 0600
#
# Identity (docs/identity.md): the master serves mutual TLS only and writes its admin credentials to
# STATE/master/admin.conf (0600). A kubelet joins with the token in KYB_JOIN_TOKEN_FILE (default
# ETC/join-token, copied there from the master) and keeps its own certificate under STATE/kubelet/pki/.
#
# Every command but install/configure takes --env FILE (default /etc/kybernetes/kybernetes.env).
#
# Several masters (docs/lab-ha.md): every master machine runs one member of one etcd cluster and a kyb-master
# that uses all the members, its own member first. `configure` options for it (defaults: one master):
#   --etcd-peers NAME=IP,NAME=IP,...   the etcd members, by node name (--name must be one of them): the
#                                      member listens on its IP (peers :2380, clients :2379 and 127.0.0.1:2379)
#                                      with --initial-cluster of them all; its etcd certificate names every IP.
#                                      Without it: one member on 127.0.0.1, as before.
#   --server-token-file FILE           kyb-master --token-file FILE (every master of a cluster needs the same
#                                      server token); default: the master's own <data-dir>/server-token
#   --run-registry yes|no              whether this master machine runs the registry (default yes)
#   --master A:6443,B:6443,...         several masters: kubelets and kybctl fail over among them; a master's
#                                      own --master-listen then defaults to IP:6443
#   --etcd-heartbeat-ms MS             etcd's --heartbeat-interval (default 50) and --election-timeout (default
#   --etcd-election-ms MS              600), for the member(s) this script runs; with --etcd embedded they go to
#                                      kyb-master. Raise both on slow machines, e.g. 500 and 5000 under QEMU's
#                                      software emulation (the Vagrantfile does): the election timeout must be at
#                                      least 5 heartbeats; etcd grants leases of at least 1.5 × it.
#
# Roles and their components (in start order):
#   master  etcd (unless --etcd embedded or URLs), registry, master
#   node    containerd (unless --containerd ADDRESS of a running one), kubelet
#   all     both on one machine (deploy/up.sh: embedded etcd, the local containerd)
#
# The namespace lab runs `start` under `--netns <node netns>` (nsenter --net: containerd must keep the
# host's mount namespace to see the cgroup mounts), the VMs run the same `run` lines from systemd.
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SELF")/../.." && pwd)
DEFAULT_ENV=/etc/kybernetes/kybernetes.env
COMPONENTS=(etcd registry master containerd kubelet)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'provision: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,/^set -euo/p' "$SELF" | sed -e '$d' -e 's/^# \{0,1\}//'; }

# ----------------------------------------------------------------------------- configuration

default_ip() {
    # The address of the interface that carries the default route (what the kubelet reports too).
    local dev
    dev=$(ip -4 route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i+1); exit}}')
    [[ -n $dev ]] || { echo 127.0.0.1; return; }
    ip -4 -o addr show dev "$dev" | awk '{split($4, a, "/"); print a[1]; exit}'
}

check_value() {  # systemd EnvironmentFile and bash must read the value the same way
    local key=$1 value=$2
    [[ $value != *[\"\$\\\`]* && $value != *$'\n'* ]] || die "$key: quotes, \$, \` and backslashes are not allowed"
}

cmd_configure() {
    local role="" name="" ip="" master="" master_listen="" registry="" registry_listen="" etcd=separate
    local cluster_cidr=10.244.0.0/16 service_cidr=10.96.0.0/16 etc=/etc/kybernetes state=/var/lib/kybernetes
    local run=/run/kybernetes logs=/var/log/kybernetes containerd=own ctr_ns=kyb bridge=kyb0
    local venv=${KYB_VENV:-$REPO/.venv} master_args="" kubelet_args="" join_token_file=""
    local etcd_peers="" server_token_file="" run_registry=yes etcd_heartbeat=50 etcd_election=600
    while [[ $# -gt 0 ]]; do
        case $1 in
            --role) role=$2 ;;
            --name) name=$2 ;;
            --ip) ip=$2 ;;
            --master) master=$2 ;;
            --master-listen) master_listen=$2 ;;
            --registry) registry=$2 ;;
            --registry-listen) registry_listen=$2 ;;
            --etcd) etcd=$2 ;;
            --cluster-cidr) cluster_cidr=$2 ;;
            --service-cidr) service_cidr=$2 ;;
            --etc) etc=$2 ;;
            --state) state=$2 ;;
            --run) run=$2 ;;
            --logs) logs=$2 ;;
            --containerd) containerd=$2 ;;
            --containerd-namespace) ctr_ns=$2 ;;
            --pod-bridge) bridge=$2 ;;
            --venv) venv=$2 ;;
            --master-args) master_args=$2 ;;
            --kubelet-args) kubelet_args=$2 ;;
            --join-token-file) join_token_file=$2 ;;
            --etcd-peers) etcd_peers=$2 ;;
            --server-token-file) server_token_file=$2 ;;
            --run-registry) run_registry=$2 ;;
            --etcd-heartbeat-ms) etcd_heartbeat=$2 ;;
            --etcd-election-ms) etcd_election=$2 ;;
            *) die "configure: unknown option $1 (see provision.sh --help)" ;;
        esac
        shift 2 || die "configure: $1 needs a value"
    done
    case $role in master|node|all) ;; *) die "configure: --role must be master, node or all (got '${role}')" ;; esac
    [[ -n $name ]] || name=$(hostname)
    [[ -n $ip ]] || ip=$(default_ip)
    [[ -n $master ]] || master=$ip:6443
    if [[ -z $master_listen ]]; then
        # Several masters: this one listens on its own address (with the port of the first).
        local first=${master%%,*}
        if [[ $master == *,* ]]; then master_listen=$ip:${first##*:}; else master_listen=$master; fi
    fi
    case $run_registry in yes|no) ;; *) die "configure: --run-registry must be yes or no (got '$run_registry')" ;; esac
    [[ $etcd_heartbeat =~ ^[1-9][0-9]{0,4}$ && $etcd_heartbeat -le 10000 ]] ||
        die "configure: --etcd-heartbeat-ms must be a whole number of milliseconds from 1 to 10000 (got '$etcd_heartbeat')"
    [[ $etcd_election =~ ^[1-9][0-9]{0,4}$ && $etcd_election -le 50000 && $etcd_election -ge $((5 * etcd_heartbeat)) ]] ||
        die "configure: --etcd-election-ms must be milliseconds from 5 × --etcd-heartbeat-ms ($((5 * etcd_heartbeat))) to 50000 (got '$etcd_election')"
    if [[ -n $etcd_peers ]]; then
        [[ $etcd == separate ]] || die "configure: --etcd-peers needs --etcd separate (got '$etcd')"
        check_peers "$etcd_peers" "$name"
    fi
    [[ -n $registry ]] || registry=$ip:5000
    [[ -n $registry_listen ]] || registry_listen=$registry
    [[ -n $join_token_file ]] || join_token_file=$etc/join-token
    # --containerd own | own=ADDRESS (we run it: our config, root and state) | ADDRESS (a running one's socket)
    local address=$containerd mode=external
    case $containerd in
        own) mode=own; address=$run/containerd/containerd.sock ;;
        own=*) mode=own; address=${containerd#own=} ;;
    esac
    # containerd also listens on "<address>.ttrpc" and refuses unix socket paths over 104 bytes.
    (( ${#address} + 6 <= 104 )) || die "configure: containerd socket path $address is too long (max 98 bytes)"
    [[ ${#bridge} -le 15 ]] || die "configure: --pod-bridge $bridge is longer than 15 characters"

    mkdir -p "$etc"
    local env_file=$etc/kybernetes.env key value
    local -A values=(
        [KYB_ROLE]=$role [KYB_NODE_NAME]=$name [KYB_NODE_IP]=$ip [KYB_REPO]=$REPO [KYB_VENV]=$venv
        [KYB_ETC]=$etc [KYB_STATE_DIR]=$state [KYB_RUN_DIR]=$run [KYB_LOG_DIR]=$logs
        [KYB_MASTER]=$master [KYB_MASTER_LISTEN]=$master_listen [KYB_REGISTRY]=$registry
        [KYB_REGISTRY_LISTEN]=$registry_listen [KYB_ETCD]=$etcd [KYB_CLUSTER_CIDR]=$cluster_cidr
        [KYB_SERVICE_CIDR]=$service_cidr [KYB_CONTAINERD_MODE]=$mode [KYB_CONTAINERD_ADDRESS]=$address
        [KYB_CONTAINERD_NAMESPACE]=$ctr_ns [KYB_POD_BRIDGE]=$bridge [KYB_MASTER_ARGS]=$master_args
        [KYB_KUBELET_ARGS]=$kubelet_args [KYB_JOIN_TOKEN_FILE]=$join_token_file [KYB_ETCD_PEERS]=$etcd_peers
        [KYB_SERVER_TOKEN_FILE]=$server_token_file [KYB_RUN_REGISTRY]=$run_registry
        [KYB_ETCD_HEARTBEAT_MS]=$etcd_heartbeat [KYB_ETCD_ELECTION_MS]=$etcd_election
    )
    {
        echo "# Written by deploy/provision/provision.sh configure; read by its run/start/units commands."
        for key in $(printf '%s\n' "${!values[@]}" | sort); do
            value=${values[$key]}
            check_value "$key" "$value"
            printf '%s="%s"\n' "$key" "$value"
        done
    } > "$env_file.tmp"
    mv "$env_file.tmp" "$env_file"

    if [[ $role != node && $run_registry == yes ]]; then
        cat > "$etc/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $state/registry
  delete:
    enabled: true
http:
  addr: $registry_listen
EOF
    fi
    if [[ $role != master && $mode == own ]]; then
        # One containerd per node: own root, state, socket and opt dir; CRI off (docs/containerd.md §10).
        cat > "$etc/containerd.toml" <<EOF
version = 2
root = "$state/containerd"
state = "$run/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$address"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$state/containerd-opt"
EOF
    fi
    say "configured $role '$name' ($ip) in $env_file"
}

check_peers() {  # NAME=IPv4,... with unique names and addresses, one of them ours
    local peers=$1 self=$2 entry name ip found=no entries=()
    local -A names=() ips=()
    IFS=, read -r -a entries <<< "$peers"
    for entry in "${entries[@]}"; do
        name=${entry%%=*} ip=${entry#*=}
        [[ $entry == *=* && $name =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ &&
           $ip =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] ||
            die "configure: --etcd-peers: '$entry' is not NAME=IPv4"
        [[ -z ${names[$name]:-} && -z ${ips[$ip]:-} ]] || die "configure: --etcd-peers: '$entry' repeats a name or address"
        names[$name]=1 ips[$ip]=1
        [[ $name != "$self" ]] || found=yes
    done
    [[ $found == yes ]] || die "configure: --etcd-peers has no member named '$self' (this machine's --name)"
}

load_env() {
    local file=$1
    [[ -f $file ]] || die "no configuration at $file (run: provision.sh configure --role ...)"
    # shellcheck disable=SC1090
    . "$file"
    # Written by an older configure: today's single-master defaults.
    KYB_ETCD_PEERS=${KYB_ETCD_PEERS:-} KYB_SERVER_TOKEN_FILE=${KYB_SERVER_TOKEN_FILE:-}
    KYB_RUN_REGISTRY=${KYB_RUN_REGISTRY:-yes}
}

peer_entries() { [[ -z $KYB_ETCD_PEERS ]] || tr ',' '\n' <<< "$KYB_ETCD_PEERS"; }

etcd_self_ip() {  # this member's address (several members), else nothing
    local entry
    while read -r entry; do
        [[ ${entry%%=*} != "$KYB_NODE_NAME" ]] || { echo "${entry#*=}"; return 0; }
    done < <(peer_entries)
}

etcd_client_urls() {  # what kyb-master uses: this machine's member first, then the others
    [[ -n $KYB_ETCD_PEERS ]] || { echo https://127.0.0.1:2379; return 0; }
    local self entry urls
    self=$(etcd_self_ip)
    urls=https://$self:2379
    while read -r entry; do
        [[ ${entry#*=} == "$self" ]] || urls+=,https://${entry#*=}:2379
    done < <(peer_entries)
    echo "$urls"
}

master_self() {  # the address of this machine's own master (not another one of the list)
    if [[ $KYB_MASTER != *,* ]]; then echo "$KYB_MASTER"; return 0; fi
    local host=${KYB_MASTER_LISTEN%:*}
    case $host in ""|0.0.0.0|"[::]"|::) host=127.0.0.1 ;; esac
    echo "$host:${KYB_MASTER_LISTEN##*:}"
}

role_components() {
    local c
    for c in "${COMPONENTS[@]}"; do
        case $c in
            etcd) [[ $KYB_ROLE != node && $KYB_ETCD == separate ]] ;;
            registry) [[ $KYB_ROLE != node && $KYB_RUN_REGISTRY == yes ]] ;;
            master) [[ $KYB_ROLE != node ]] ;;
            containerd) [[ $KYB_ROLE != master && $KYB_CONTAINERD_MODE == own ]] ;;
            kubelet) [[ $KYB_ROLE != master ]] ;;
        esac && echo "$c"
    done
    return 0
}

check_component() {
    local c=$1 known
    for known in "${COMPONENTS[@]}"; do [[ $c == "$known" ]] && return 0; done
    die "unknown component '$c' (one of: ${COMPONENTS[*]})"
}

# ----------------------------------------------------------------------------- the commands we run

component_argv() {  # fills the global array ARGV with the component's command line
    local c=$1
    local py=$KYB_VENV/bin/python
    case $c in
        etcd)
            # Mutual TLS (its own CA, made by `run etcd`: master.store.etcdtls) and hourly compaction.
            # Several members (--etcd-peers): each on its own address, clients also on 127.0.0.1.
            local pki=$KYB_STATE_DIR/etcd-pki urls
            if [[ -n $KYB_ETCD_PEERS ]]; then
                local ip entry initial=""
                ip=$(etcd_self_ip)
                while read -r entry; do initial+=${initial:+,}${entry%%=*}=https://${entry#*=}:2380; done < <(peer_entries)
                urls=(--listen-client-urls "https://$ip:2379,https://127.0.0.1:2379"
                      --advertise-client-urls "https://$ip:2379"
                      --listen-peer-urls "https://$ip:2380" --initial-advertise-peer-urls "https://$ip:2380"
                      --initial-cluster "$initial" --initial-cluster-state new)
            else
                urls=(--listen-client-urls https://127.0.0.1:2379 --advertise-client-urls https://127.0.0.1:2379
                      --listen-peer-urls https://127.0.0.1:2380 --initial-advertise-peer-urls https://127.0.0.1:2380
                      --initial-cluster "$KYB_NODE_NAME=https://127.0.0.1:2380")
            fi
            ARGV=(etcd --name "$KYB_NODE_NAME" --data-dir "$KYB_STATE_DIR/etcd" "${urls[@]}"
                  --cert-file "$pki/server.crt" --key-file "$pki/server.key" --client-cert-auth
                  --trusted-ca-file "$pki/ca.crt" --peer-cert-file "$pki/server.crt" --peer-key-file "$pki/server.key"
                  --peer-client-cert-auth --peer-trusted-ca-file "$pki/ca.crt"
                  --auto-compaction-mode periodic --auto-compaction-retention 1h
                  --heartbeat-interval "${KYB_ETCD_HEARTBEAT_MS:-50}" --election-timeout "${KYB_ETCD_ELECTION_MS:-600}"
                  --pre-vote=true
                  --logger zap --log-outputs stderr) ;;
        registry)
            ARGV=(docker-registry serve "$KYB_ETC/registry.yml") ;;
        master)
            local etcd_flags=()
            case $KYB_ETCD in
                embedded) etcd_flags=(--etcd-heartbeat-interval "${KYB_ETCD_HEARTBEAT_MS:-50}"
                                      --etcd-election-timeout "${KYB_ETCD_ELECTION_MS:-600}") ;;
                separate) etcd_flags=(--etcd "$(etcd_client_urls)") ;;
                *) etcd_flags=(--etcd "$KYB_ETCD") ;;
            esac
            [[ $KYB_ETCD == embedded ]] || etcd_flags+=(--etcd-cafile "$KYB_STATE_DIR/etcd-pki/ca.crt"
                --etcd-certfile "$KYB_STATE_DIR/etcd-pki/client.crt" --etcd-keyfile "$KYB_STATE_DIR/etcd-pki/client.key")
            # The serving certificate names every address the master is reached by (several masters: its own;
            # a client of all of them checks the name every master's certificate carries, core/channel.py).
            local more=()
            [[ $KYB_MASTER == *,* ]] || more+=(--tls-san "${KYB_MASTER%:*}")
            more+=(--tls-san "$KYB_NODE_IP")
            [[ -z $KYB_SERVER_TOKEN_FILE ]] || more+=(--token-file "$KYB_SERVER_TOKEN_FILE")
            # shellcheck disable=SC2206  # extra flags are words by design
            ARGV=("$py" -m kybernetes.master.main --listen "$KYB_MASTER_LISTEN" "${etcd_flags[@]}"
                  --data-dir "$KYB_STATE_DIR/master" --cluster-cidr "$KYB_CLUSTER_CIDR"
                  --service-cidr "$KYB_SERVICE_CIDR" "${more[@]}" $KYB_MASTER_ARGS) ;;
        containerd)
            ARGV=(containerd --config "$KYB_ETC/containerd.toml") ;;
        kubelet)
            # shellcheck disable=SC2206
            ARGV=("$py" -m kybernetes.kubelet.main --master "$KYB_MASTER" --node-name "$KYB_NODE_NAME"
                  --token-file "$KYB_JOIN_TOKEN_FILE"
                  --containerd-address "$KYB_CONTAINERD_ADDRESS" --containerd-namespace "$KYB_CONTAINERD_NAMESPACE"
                  --root-dir "$KYB_STATE_DIR/kubelet" --insecure-registry "$KYB_REGISTRY"
                  --node-ip "$KYB_NODE_IP" --pod-bridge "$KYB_POD_BRIDGE" $KYB_KUBELET_ARGS) ;;
    esac
}

component_marker() {  # a string that only this configuration's process has in its command line
    case $1 in
        etcd) echo "$KYB_STATE_DIR/etcd" ;;
        registry) echo "$KYB_ETC/registry.yml" ;;
        master) echo "$KYB_STATE_DIR/master" ;;
        containerd) echo "$KYB_ETC/containerd.toml" ;;
        kubelet) echo "$KYB_STATE_DIR/kubelet" ;;
    esac
}

cmd_run() {
    local c=$1
    mkdir -p "$KYB_STATE_DIR" "$KYB_RUN_DIR"
    case $c in
        containerd) mkdir -p "$(dirname "$KYB_CONTAINERD_ADDRESS")" ;;
        kubelet) mkdir -p "$KYB_STATE_DIR/kubelet" ;;
        etcd)
            # Every member's certificate names every member (master.store.etcdtls); the CA is copied in first.
            local hosts=() entry
            while read -r entry; do hosts+=(--host "${entry#*=}"); done < <(peer_entries)
            "$KYB_VENV/bin/python" -m kybernetes.master.store.etcdtls "$KYB_STATE_DIR/etcd-pki" "${hosts[@]}" ;;
    esac
    component_argv "$c"
    # `start` asks for the pid here: nsenter and setsid exec, so this shell's pid is the component's.
    [[ -z ${KYB_PIDFILE:-} ]] || echo $$ > "$KYB_PIDFILE"
    cd /
    export PYTHONUNBUFFERED=1
    exec "${ARGV[@]}"
}

# ----------------------------------------------------------------------------- no-systemd mode

pid_of() {  # the running pid of a component started by `start`, or nothing
    local c=$1 pidfile=$KYB_RUN_DIR/$1.pid pid marker
    [[ -f $pidfile ]] || return 0
    pid=$(cat "$pidfile" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    marker=$(component_marker "$c")
    # The pid must still be our process (pid reuse) and not a zombie.
    if tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -qF -- "$marker" &&
       [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
        echo "$pid"
    fi
}

in_netns() {  # run a command in the given netns (nsenter --net keeps our mount namespace) or here
    local netns=$1; shift
    if [[ -n $netns ]]; then nsenter --net="/run/netns/$netns" "$@"; else "$@"; fi
}

ready_once() {
    local c=$1 netns=$2
    case $c in
        etcd) local pki=$KYB_STATE_DIR/etcd-pki
              in_netns "$netns" curl -fsS --max-time 2 --cacert "$pki/ca.crt" --cert "$pki/client.crt" \
                  --key "$pki/client.key" https://127.0.0.1:2379/health 2>/dev/null | grep -q '"true"' ;;
        registry) in_netns "$netns" curl -fsS --max-time 2 -o /dev/null "http://$KYB_REGISTRY/v2/" 2>/dev/null ;;
        containerd) ctr --connect-timeout 200ms -a "$KYB_CONTAINERD_ADDRESS" version >/dev/null 2>&1 ;;
    esac
}

cmd_wait() {
    local c=$1 netns=$2 timeout=$3 pid deadline
    deadline=$((SECONDS + timeout))
    case $c in
        master)
            in_netns "$netns" "$KYB_VENV/bin/python" "$REPO/deploy/lib/cluster.py" serving \
                --kubeconfig "$(admin_config)" --server "$(master_self)" --timeout "$timeout" ;;
        kubelet)
            # With the kubelet's own certificate (a Node may read Nodes): a Node VM has no admin config.
            in_netns "$netns" "$KYB_VENV/bin/python" "$REPO/deploy/lib/cluster.py" nodes-ready \
                --pki "$KYB_STATE_DIR/kubelet/pki/$KYB_NODE_NAME" --server "$KYB_MASTER" --names "$KYB_NODE_NAME" \
                --timeout "$timeout" ;;
        *)
            until ready_once "$c" "$netns"; do
                pid=$(pid_of "$c")
                if [[ -z $pid && -f $KYB_RUN_DIR/$c.pid ]]; then
                    tail -n 20 "$KYB_LOG_DIR/$c.log" >&2 2>/dev/null || true
                    die "$c exited during start (log: $KYB_LOG_DIR/$c.log)"
                fi
                (( SECONDS < deadline )) || die "$c not ready after ${timeout}s (log: $KYB_LOG_DIR/$c.log)"
                sleep 0.1
            done ;;
    esac
}

admin_config() { echo "$KYB_STATE_DIR/master/admin.conf"; }

cmd_join_token() {  # a join token from this master, written to a file only root reads
    local out=$1 ttl=$2 netns=$3
    [[ -n $out ]] || die "join-token: --out FILE is required"
    [[ $KYB_ROLE != node ]] || die "join-token: run it on a master (this machine's role is node)"
    local token
    token=$(in_netns "$netns" "$KYB_VENV/bin/kybctl" --kubeconfig "$(admin_config)" -s "$KYB_MASTER" \
        token create --ttl "$ttl" --description "provision.sh join-token")
    mkdir -p "$(dirname "$out")"
    (umask 077 && printf '%s\n' "$token" > "$out.tmp") && mv "$out.tmp" "$out"
    say "join token ${token##*::} written to $out"
}

cmd_start() {
    local c=$1 netns=$2 timeout=$3 wait=$4 pid
    pid=$(pid_of "$c")
    if [[ -n $pid ]]; then
        say "$c already running (pid $pid)"
    else
        mkdir -p "$KYB_RUN_DIR" "$KYB_LOG_DIR"
        local pidfile=$KYB_RUN_DIR/$c.pid launcher=()
        rm -f "$pidfile"
        [[ -z $netns ]] || launcher=(nsenter "--net=/run/netns/$netns")
        KYB_PIDFILE=$pidfile nohup setsid "${launcher[@]}" "$SELF" run "$c" --env "$ENV_FILE" \
            >>"$KYB_LOG_DIR/$c.log" 2>&1 </dev/null &
        local deadline=$((SECONDS + 10))
        until [[ -s $pidfile ]]; do
            (( SECONDS < deadline )) || die "$c did not start (log: $KYB_LOG_DIR/$c.log)"
            sleep 0.02
        done
        say "$c started (pid $(cat "$pidfile"))${netns:+ in netns $netns}"
    fi
    [[ $wait == no ]] || cmd_wait "$c" "$netns" "$timeout"
}

cmd_stop() {
    local c=$1 kill=$2 pid grace=15
    pid=$(pid_of "$c")
    if [[ -z $pid ]]; then rm -f "$KYB_RUN_DIR/$c.pid"; return 0; fi
    if [[ $kill == yes ]]; then
        kill -KILL "$pid" 2>/dev/null || true
    else
        kill -TERM "$pid" 2>/dev/null || true
    fi
    local deadline=$((SECONDS + grace))
    while [[ -n $(pid_of "$c") ]]; do
        if (( SECONDS >= deadline )); then kill -KILL "$pid" 2>/dev/null || true; fi
        sleep 0.05
    done
    rm -f "$KYB_RUN_DIR/$c.pid"
    say "$c stopped (pid $pid)"
}

cmd_status() {
    local c pid
    printf '%-11s %-8s %s\n' COMPONENT PID STATE
    while read -r c; do
        pid=$(pid_of "$c")
        printf '%-11s %-8s %s\n' "$c" "${pid:--}" "$([[ -n $pid ]] && echo running || echo stopped)"
    done < <(role_components)
}

# ----------------------------------------------------------------------------- systemd mode

cmd_units() {
    local dir=$1 install=no
    if [[ -z $dir ]]; then
        [[ -d /run/systemd/system ]] || die "units: systemd is not running here (use start/stop instead)"
        dir=/etc/systemd/system install=yes
    fi
    mkdir -p "$dir"
    local c unit after extra units=()
    while read -r c; do
        unit=kyb-$c.service
        after="network-online.target"
        extra=""
        case $c in
            master) [[ $KYB_ETCD != separate ]] || after="$after kyb-etcd.service" ;;
            kubelet) [[ $KYB_CONTAINERD_MODE != own ]] || after="$after kyb-containerd.service" ;;
            # Like containerd.service: the shims (and so the containers) outlive a containerd restart.
            containerd) extra=$'Delegate=yes\nKillMode=process\nOOMScoreAdjust=-999\nLimitNOFILE=1048576' ;;
        esac
        cat > "$dir/$unit" <<EOF
# Written by deploy/provision/provision.sh units.
[Unit]
Description=Kybernetes $c
Wants=network-online.target
After=$after

[Service]
ExecStart=$SELF run $c --env $ENV_FILE
Restart=on-failure
RestartSec=2
${extra}

[Install]
WantedBy=multi-user.target
EOF
        units+=("$unit")
    done < <(role_components)
    if [[ $install == no ]]; then say "wrote ${units[*]} into $dir"; return 0; fi
    systemctl daemon-reload
    systemctl enable --now "${units[@]}"
    say "enabled and started: ${units[*]}"
}

# ----------------------------------------------------------------------------- images

cmd_images() {
    local netns=$1 out=$KYB_STATE_DIR/images name file
    mkdir -p "$out"
    if [[ ! -f $out/images.json ]]; then
        say "building the sample images into $out (offline)"
        "$REPO/deploy/images/build.sh" "$out" >/dev/null
    fi
    while IFS=$'\t' read -r name file; do
        in_netns "$netns" skopeo copy --quiet --insecure-policy --dest-tls-verify=false \
            "oci-archive:$out/$file" "docker://$KYB_REGISTRY/$name" >/dev/null
        say "pushed $KYB_REGISTRY/$name"
    done < <(jq -r 'to_entries[] | "\(.key)\t\(.value)"' "$out/images.json")
}

# ----------------------------------------------------------------------------- main

main() {
    [[ $# -gt 0 ]] || { usage; exit 2; }
    local command=$1; shift
    case $command in
        -h|--help|help) usage; return 0 ;;
        install)
            KYB_REPO=$REPO
            export KYB_REPO
            # shellcheck source=deploy/lib/install.sh
            . "$REPO/deploy/lib/install.sh"
            install_missing_packages
            disable_system_services
            prepare_venv
            return 0 ;;
        configure) cmd_configure "$@"; return 0 ;;
    esac
    local component="" netns="" kill=no timeout=60 wait=yes dir="" out="" ttl=24h
    ENV_FILE=$DEFAULT_ENV
    case $command in run|start|stop|wait) [[ $# -gt 0 ]] || die "$command needs a component"; component=$1; shift ;; esac
    while [[ $# -gt 0 ]]; do
        case $1 in
            --env) ENV_FILE=$2; shift 2 ;;
            --netns) netns=$2; shift 2 ;;
            --timeout) timeout=$2; shift 2 ;;
            --kill) kill=yes; shift ;;
            --no-wait) wait=no; shift ;;
            --dir) dir=$2; shift 2 ;;
            --out) out=$2; shift 2 ;;
            --ttl) ttl=$2; shift 2 ;;
            *) die "$command: unknown option $1" ;;
        esac
    done
    ENV_FILE=$(readlink -f "$ENV_FILE")
    load_env "$ENV_FILE"
    [[ -z $component ]] || check_component "$component"
    case $command in
        run) cmd_run "$component" ;;
        start) cmd_start "$component" "$netns" "$timeout" "$wait" ;;
        stop) cmd_stop "$component" "$kill" ;;
        wait) cmd_wait "$component" "$netns" "$timeout" ;;
        status) cmd_status ;;
        units) cmd_units "$dir" ;;
        images) cmd_images "$netns" ;;
        join-token) cmd_join_token "$out" "$ttl" "$netns" ;;
        *) die "unknown command '$command' (see provision.sh --help)" ;;
    esac
}

main "$@"
