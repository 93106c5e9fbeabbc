#!/usr/bin/env bash
# Idempotent: a second Docker Swarm as its users run one: the manager is a head node reached over SSH
# (`[swarm] manager = "remote"`, `[remote] host = "tg-head"`) and this machine is no node of it.
#   - namespace tghead: a dockerd (the swarm manager) and an sshd (user tgremote, the key of setup_remote.sh;
#     sessions get DOCKER_HOST through SetEnv); ssh alias tg-head
#   - namespace tgworker: a dockerd only (a worker) that advertises one GPU as the generic resource
#     NVIDIA-GPU (node-generic-resources "NVIDIA-GPU=GPU-0" in its daemon.json); the head advertises none
#   - the two talk over a veth of their own (10.231.3.1 <-> 10.231.3.2); each reaches the registry
#     as 127.0.0.1:5000 (socat, as the remote does)
# Run setup_remote.sh first (the registry, the user, the client key). Re-running restarts only what died,
# and a dockerd whose daemon.json changed.
set -euo pipefail
STATE=${TG_PIPELINE_STATE:-/var/lib/tg-pipeline-test}
LOG_TAG=setup_swarm_remote
. "$(dirname "$0")/netns_lib.sh"
CDIR=$STATE/client; GROUP=tgdocker; USER_OK=tgremote
HEAD_IP=10.231.1.2; HEAD_SWARM_IP=10.231.3.1; WORKER_SWARM_IP=10.231.3.2
GPU_RESOURCE=NVIDIA-GPU
[ -f "$CDIR/id_ed25519" ] && id -u $USER_OK >/dev/null 2>&1 || die "run scripts/setup_remote.sh first"

# --- network: each namespace to this machine, and head <-> worker ---------------------------------
make_netns tghead tgh-host tgh-ns 10.231.1.1 $HEAD_IP
make_netns tgworker tgw-host tgw-ns 10.231.2.1 10.231.2.2
if ! ip -n tghead link show tghw-h >/dev/null 2>&1; then
    ip -n tgworker link del tghw-w 2>/dev/null || true
    ip link add tghw-h type veth peer name tghw-w
    ip link set tghw-h netns tghead
    ip link set tghw-w netns tgworker
    ip -n tghead addr add $HEAD_SWARM_IP/30 dev tghw-h
    ip -n tgworker addr add $WORKER_SWARM_IP/30 dev tghw-w
    ip -n tghead link set tghw-h up
    ip -n tgworker link set tghw-w up
fi

# --- engines: one dockerd each, its daemon.json its own ------------------------------------------------
engine() {  # NAME DAEMON_JSON: the dockerd of namespace tgNAME, restarted when its daemon.json changed
    local name=$1 json=$2 dir=$STATE/$1 run=/run/tg-$1
    mkdir -p "$dir" "$run"
    if ! printf '%s\n' "$json" | cmp -s - "$dir/daemon.json"; then
        printf '%s\n' "$json" >"$dir/daemon.json"
        stop_ns_dockerd "$run"
    fi
    start_ns_dockerd "tg$name" "$run/docker.sock" "$run" "$dir" --group $GROUP --config-file "$dir/daemon.json"
    bridge_registry "tg$name" "${3}" "$dir"
}
engine head '{}' 10.231.1.1
engine worker "{\"node-generic-resources\": [\"$GPU_RESOURCE=GPU-0\"]}" 10.231.2.1
HEAD=(docker -H unix:///run/tg-head/docker.sock)
WORKER=(docker -H unix:///run/tg-worker/docker.sock)

# --- sshd on the head, and the ssh alias tg-head ---------------------------------------------------------
[ -f "$STATE/head/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$STATE/head/ssh_host_ed25519_key"
mkdir -p /run/sshd
start_sshd tghead $HEAD_IP "$STATE/head" "$(cat <<EOF
ListenAddress $HEAD_IP
Port 22
HostKey $STATE/head/ssh_host_ed25519_key
PidFile $STATE/head/sshd.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
AllowUsers $USER_OK
AuthorizedKeysFile /etc/tg-remote/authorized_keys/%u
SetEnv DOCKER_HOST=unix:///run/tg-head/docker.sock
Subsystem sftp internal-sftp
EOF
)"
ssh_alias tg-head $HEAD_IP $USER_OK "$CDIR/id_ed25519" "$STATE/head/known_hosts" "$STATE/head/ssh_host_ed25519_key.pub"

# --- the swarm: head manager, worker joined ------------------------------------------------------------
state() { "$@" info --format '{{.Swarm.LocalNodeState}} {{.Swarm.NodeAddr}} {{.Swarm.ControlAvailable}}' 2>/dev/null || true; }
if [ "$(state "${HEAD[@]}")" != "active $HEAD_SWARM_IP true" ] || ! "${HEAD[@]}" node ls >/dev/null 2>&1; then
    log "initialising the swarm on the head (manager at $HEAD_SWARM_IP)"
    "${HEAD[@]}" swarm leave --force >/dev/null 2>&1 || true
    "${HEAD[@]}" swarm init --advertise-addr $HEAD_SWARM_IP --listen-addr $HEAD_SWARM_IP:2377 >/dev/null
fi
joined() { "${WORKER[@]}" info --format '{{.Swarm.LocalNodeState}} {{range .Swarm.RemoteManagers}}{{.Addr}}{{end}}' 2>/dev/null || true; }
worker_id=$("${WORKER[@]}" info --format '{{.Swarm.NodeID}}' 2>/dev/null || true)
if [ "$(joined)" != "active $HEAD_SWARM_IP:2377" ] || [ -z "$worker_id" ] \
        || ! "${HEAD[@]}" node inspect "$worker_id" >/dev/null 2>&1; then
    log "joining the worker ($WORKER_SWARM_IP) to the head's swarm"
    "${WORKER[@]}" swarm leave --force >/dev/null 2>&1 || true
    timeout 60 "${WORKER[@]}" swarm join --token "$("${HEAD[@]}" swarm join-token -q worker)" \
        --advertise-addr $WORKER_SWARM_IP $HEAD_SWARM_IP:2377 >/dev/null
    worker_id=$("${WORKER[@]}" info --format '{{.Swarm.NodeID}}')
fi
keep="$("${HEAD[@]}" info --format '{{.Swarm.NodeID}}') $worker_id"
for node in $("${HEAD[@]}" node ls --format '{{.ID}}'); do  # nodes left behind by earlier joins
    case " $keep " in *" $node "*) ;; *) "${HEAD[@]}" node rm --force "$node" >/dev/null ;; esac
done
gpu_seen() { "${HEAD[@]}" node inspect "$worker_id" --format '{{.Status.State}} {{json .Description.Resources.GenericResources}}' \
    2>/dev/null | grep -q "^ready .*GPU-0"; }
wait_for "[ \$(${HEAD[*]} node ls --format '{{.Status}}' | grep -c Ready) -ge 2 ] && gpu_seen" 120 \
    || die "the worker is not a ready node advertising $GPU_RESOURCE" "$STATE/worker/dockerd.log"

cat >"$STATE/swarm_remote.env" <<EOF
TG_HEAD_ALIAS=tg-head
TG_HEAD_DOCKER_HOST=unix:///run/tg-head/docker.sock
TG_WORKER_DOCKER_HOST=unix:///run/tg-worker/docker.sock
TG_GPU_RESOURCE=$GPU_RESOURCE
EOF
log "swarm ready: manager ssh tg-head ($USER_OK@$HEAD_IP), worker $WORKER_SWARM_IP with $GPU_RESOURCE=GPU-0"
