#!/usr/bin/env bash
# Idempotent: a two-node Docker Swarm for run_swarm. The local engine is the manager, advertised on
# the veth address of the simulated remote (setup_remote.sh first); the remote engine joins as a
# worker, so tasks really spread over two engines with separate image stores. Both pull job images
# from the registry at 127.0.0.1:5000 (reachable under that name on both sides).
set -euo pipefail
MANAGER_IP=10.231.0.1; WORKER_IP=10.231.0.2
REMOTE=(env DOCKER_HOST=unix:///run/tg-remote/docker.sock docker)
log() { printf '[setup_swarm] %s\n' "$*" >&2; }

state() { "$@" info --format '{{.Swarm.LocalNodeState}} {{.Swarm.NodeAddr}} {{.Swarm.ControlAvailable}} {{.Swarm.Cluster.ID}}' 2>/dev/null || true; }

read -r lstate laddr lcontrol lcluster <<<"$(state docker)"
if [ "$lstate" != active ] || [ "$laddr" != "$MANAGER_IP" ] || [ "$lcontrol" != true ] || ! docker node ls >/dev/null 2>&1; then
    log "initialising the swarm on the local engine (manager at $MANAGER_IP)"
    docker swarm leave --force >/dev/null 2>&1 || true
    docker swarm init --advertise-addr "$MANAGER_IP" --listen-addr "$MANAGER_IP:2377" >/dev/null
    read -r lstate laddr lcontrol lcluster <<<"$(state docker)"
fi

remote_manager() { "${REMOTE[@]}" info --format '{{.Swarm.LocalNodeState}} {{range .Swarm.RemoteManagers}}{{.Addr}}{{end}}' 2>/dev/null || true; }
if [ "$(remote_manager)" != "active $MANAGER_IP:2377" ]; then
    log "joining the remote engine ($WORKER_IP) as a worker"
    "${REMOTE[@]}" swarm leave --force >/dev/null 2>&1 || true
    timeout 60 "${REMOTE[@]}" swarm join --token "$(docker swarm join-token -q worker)" \
        --advertise-addr "$WORKER_IP" "$MANAGER_IP:2377" >/dev/null
fi
# nodes left behind by earlier joins: every node but this manager and the remote's current one
keep="$(docker info --format '{{.Swarm.NodeID}}') $("${REMOTE[@]}" info --format '{{.Swarm.NodeID}}')"
for node in $(docker node ls --format '{{.ID}}'); do
    case " $keep " in *" $node "*) ;; *) docker node rm --force "$node" >/dev/null ;; esac
done
for _ in $(seq 1 60); do
    [ "$(docker node ls --format '{{.Status}}' | grep -c Ready)" -ge 2 ] && break
    sleep 0.5
done
log "swarm ready: $(docker node ls --format '{{.Hostname}}/{{.Status}}/{{.ManagerStatus}}' | tr '\n' ' ')"
