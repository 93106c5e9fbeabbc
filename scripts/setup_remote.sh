#!/usr/bin/env bash
# Idempotent: a simulated remote Docker host and a registry both engines reach.
#   - network namespace tgremote (veth 10.231.0.1/30 here <-> 10.231.0.2/30 there)
#   - a second dockerd in it: own data-root, exec-root, socket, so images really travel
#   - sshd in it: key-only login for tgremote (may use Docker) and tgnodocker (may not);
#     sessions get DOCKER_HOST through sshd's SetEnv
#   - Debian's docker-registry on 127.0.0.1:5000, reachable as 127.0.0.1:5000 from the
#     namespace too (socat both ways), so one image name works on both engines
#   - client side: key, known_hosts, and a `Host tg-remote` block in ~/.ssh/config
#   - stand-in GPUs (no NVIDIA hardware here): the remote dockerd starts with an executable
#     nvidia-container-runtime-hook on its PATH (exits 0), so Docker 20.10 registers its nvidia device
#     driver and sets NVIDIA_VISIBLE_DEVICES in each container to the ids it was given; the PATH of
#     tgremote's SSH sessions there (~/.bashrc, which bash reads for a command sshd runs) holds an
#     nvidia-smi stand-in that lists 8 GPUs with fixed UUIDs. A remote
#     dockerd running without the hook on its PATH is restarted once (it stays a worker of the swarm;
#     scripts/setup_swarm.sh checks). A machine with real NVIDIA GPUs needs none of this.
# Re-running restarts only what died, and sshd when its config changed (OpenSSH's default limits).
set -euo pipefail

STATE=${TG_PIPELINE_STATE:-/var/lib/tg-pipeline-test}
NS=tgremote
HOST_IF=tgr-host; NS_IF=tgr-ns
HOST_IP=10.231.0.1; NS_IP=10.231.0.2; LINK_NET=10.231.0.0/30
RDIR=$STATE/remote; CDIR=$STATE/client; REGDIR=$STATE/registry
RRUN=/run/tg-remote
SOCK=$RRUN/docker.sock
USER_OK=tgremote; USER_NO=tgnodocker; GROUP=tgdocker
REGISTRY=127.0.0.1:5000
REGISTRY_AUTH=127.0.0.1:5001

LOG_TAG=setup_remote
. "$(dirname "$0")/netns_lib.sh"

missing=()
for p in docker.io openssh-server openssh-client socat docker-registry iproute2 curl; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
mkdir -p "$RDIR" "$CDIR" "$REGDIR/data" "$RRUN" /run/sshd /etc/tg-remote/authorized_keys
chmod 755 /etc/tg-remote /etc/tg-remote/authorized_keys

# --- network -------------------------------------------------------------------
make_netns $NS $HOST_IF $NS_IF $HOST_IP $NS_IP
# The remote engine's own `docker build` must reach the package index (build_on = "remote"):
# forward the namespace's traffic out of this host's default-route interface, masqueraded.
# Docker sets FORWARD's policy to DROP; DOCKER-USER is the chain it leaves to us.
ipt() { iptables -w "$@"; }
ensure_rule() {  # table chain rule...: add once (checked with -C), inserted at the top of the chain
    local table=$1 chain=$2; shift 2
    ipt -t "$table" -C "$chain" "$@" 2>/dev/null || ipt -t "$table" -I "$chain" "$@"
}
UPLINK=$(ip route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')
[ -n "$UPLINK" ] || die "no default route on this host: the remote cannot reach the package index"
sysctl -q -w net.ipv4.ip_forward=1
ipt -t filter -n -L DOCKER-USER >/dev/null 2>&1 || ipt -t filter -N DOCKER-USER
ipt -t filter -C FORWARD -j DOCKER-USER 2>/dev/null || ipt -t filter -I FORWARD -j DOCKER-USER
ensure_rule nat POSTROUTING -s $LINK_NET -o "$UPLINK" -j MASQUERADE
ensure_rule filter DOCKER-USER -i $HOST_IF -o "$UPLINK" -j ACCEPT
ensure_rule filter DOCKER-USER -o $HOST_IF -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT

# --- users -----------------------------------------------------------------------
getent group $GROUP >/dev/null || groupadd --system $GROUP
for u in $USER_OK $USER_NO; do
    id -u $u >/dev/null 2>&1 || useradd --create-home --shell /bin/bash $u
    # '*': no password, yet not "locked" ('!'), which sshd without PAM refuses even for keys
    [ "$(getent shadow $u | cut -d: -f2)" = '*' ] || usermod -p '*' $u
done
id -nG $USER_OK | grep -qw $GROUP || usermod -aG $GROUP $USER_OK

# --- stand-in GPUs ----------------------------------------------------------------------
GPU_DIR=$RDIR/gpu-standin
mkdir -p "$GPU_DIR/hook" "$GPU_DIR/bin"
install_script() {  # PATH TEXT: an executable script, rewritten only when it differs
    printf '%s\n' "$2" >"$1.new"
    if cmp -s "$1.new" "$1"; then rm -f "$1.new"; else chmod 755 "$1.new"; mv "$1.new" "$1"; fi
}
install_script "$GPU_DIR/hook/nvidia-container-runtime-hook" '#!/bin/sh
# Stand-in for the NVIDIA Container Toolkit hook (tests only): its presence on the PATH of dockerd makes
# Docker register its nvidia device driver; as the OCI prestart hook it reads the state and does nothing.
cat >/dev/null 2>&1
exit 0'
install_script "$GPU_DIR/bin/nvidia-smi" '#!/bin/sh
# Stand-in for nvidia-smi (tests only): 8 GPUs with fixed UUIDs, printed as the real one prints them.
each() {
    i=0
    while [ $i -lt 8 ]; do
        "$@" $i "GPU-7e57a1d0-5a11-4b0c-9d1e-00000000000$i"
        i=$((i + 1))
    done
}
# --query-gpu=FIELD,... --format=csv,noheader: the fields asked for, in that order, as the real one prints them
query() {
    line="" sep=""
    for field in $(echo "$FIELDS" | tr , " "); do
        case "$field" in
            index) value=$1 ;; uuid) value=$2 ;; name) value="NVIDIA Stand-In 16GB" ;;
            memory.total) value="16384 MiB" ;; memory.used) value="0 MiB" ;; driver_version) value="0.0" ;;
            *) echo "Field \"$field\" is not a valid field to query." >&2; exit 2 ;;
        esac
        line="$line$sep$value" sep=", "
    done
    printf "%s\n" "$line"
}
list() { printf "GPU %s: NVIDIA Stand-In 16GB (UUID: %s)\n" "$1" "$2"; }
table() { printf "|   %s  NVIDIA Stand-In 16GB     Off | 00000000:%02X:00.0 Off |    0MiB / 16384MiB |\n" "$1" "$1"; }
case "$*" in
    "--query-gpu="*" --format=csv,noheader") FIELDS=${1#--query-gpu=}; each query ;;
    "-L" | "--list-gpus") each list ;;
    "") echo "NVIDIA-SMI stand-in (tests)   Driver Version: 0.0   CUDA Version: 0.0"; each table ;;
    *) echo "nvidia-smi stand-in: unsupported arguments: $*" >&2; exit 2 ;;
esac'

# the nvidia-smi stand-in first on the PATH of tgremote's sessions on this host: ~/.bashrc, before its
# "not interactive: return"; only this host's sshd sets this DOCKER_HOST (tg-head's sessions, the same user, not)
BASHRC=$(getent passwd $USER_OK | cut -d: -f6)/.bashrc
MARK='tg-pipeline stand-in GPUs'
{
    echo "# >>> $MARK >>>"
    echo "if [ \"\$DOCKER_HOST\" = unix://$SOCK ]; then PATH=$GPU_DIR/bin:\$PATH; fi"
    echo "# <<< $MARK <<<"
    sed "/^# >>> $MARK >>>\$/,/^# <<< $MARK <<<\$/d" "$BASHRC" 2>/dev/null || true
} >"$BASHRC.new"
if cmp -s "$BASHRC.new" "$BASHRC"; then rm -f "$BASHRC.new"; else
    chown $USER_OK: "$BASHRC.new"
    mv "$BASHRC.new" "$BASHRC"
fi

# --- remote engine -----------------------------------------------------------------
# the stand-in hook on the PATH of the remote dockerd: one running without it is restarted (once)
if alive "$RRUN/docker.pid" && ! tr '\0' '\n' <"/proc/$(cat "$RRUN/docker.pid")/environ" \
        | grep -q "^PATH=$GPU_DIR/hook:"; then
    log "restarting the remote dockerd with the stand-in nvidia-container-runtime-hook on its PATH"
    stop_ns_dockerd "$RRUN"
fi
PATH="$GPU_DIR/hook:$PATH" start_ns_dockerd $NS $SOCK $RRUN "$RDIR" --group $GROUP
# The base image (setup_docker.sh's: it carries this host's CA bundle and PIP_CERT, which pip
# inside the remote's build containers needs behind this machine's TLS-intercepting proxy)
PYVER=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
BASE=${TG_PIPELINE_BASE_IMAGE:-python:${PYVER}-slim}
if ! docker -H unix://$SOCK image inspect "$BASE" >/dev/null 2>&1 && docker image inspect "$BASE" >/dev/null 2>&1; then
    log "loading the base image $BASE into the remote engine"
    docker save "$BASE" | docker -H unix://$SOCK load -q >/dev/null
fi

# --- registry ------------------------------------------------------------------------
cat >"$REGDIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REGDIR/data
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
registry_ok() { curl -fsS -m 3 "http://$REGISTRY/v2/" >/dev/null 2>&1; }
if ! registry_ok; then
    log "starting the registry on $REGISTRY"
    start "$REGDIR/registry.pid" "$REGDIR/registry.log" docker-registry serve "$REGDIR/config.yml"
    wait_for registry_ok 60 || die "the registry did not start" "$REGDIR/registry.log"
fi
# a second registry that wants a login (user tguser, password in $REGDIR/auth/password): push refusals
mkdir -p "$REGDIR/auth"
if [ ! -s "$REGDIR/auth/htpasswd" ]; then
    head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$REGDIR/auth/password"
    python3 -W ignore -c 'import crypt, sys; print("tguser:" + crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))' \
        "$(cat "$REGDIR/auth/password")" >"$REGDIR/auth/htpasswd"
fi
cat >"$REGDIR/config-auth.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REGDIR/data-auth
http:
  addr: $REGISTRY_AUTH
auth:
  htpasswd:
    realm: tg-pipeline-test
    path: $REGDIR/auth/htpasswd
EOF
registry_auth_up() { [ "$(curl -s -o /dev/null -w '%{http_code}' -m 3 "http://$REGISTRY_AUTH/v2/")" = 401 ]; }
if ! registry_auth_up; then
    log "starting the registry with a login on $REGISTRY_AUTH"
    start "$REGDIR/registry-auth.pid" "$REGDIR/registry-auth.log" docker-registry serve "$REGDIR/config-auth.yml"
    wait_for registry_auth_up 60 || die "the registry with a login did not start" "$REGDIR/registry-auth.log"
fi
bridge_registry $NS $HOST_IP "$REGDIR"

# --- sshd ----------------------------------------------------------------------------
[ -f "$RDIR/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$RDIR/ssh_host_ed25519_key"
[ -f "$CDIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C tg-pipeline-test -f "$CDIR/id_ed25519"
for u in $USER_OK $USER_NO; do
    install -m 644 "$CDIR/id_ed25519.pub" /etc/tg-remote/authorized_keys/$u
done
# OpenSSH's own limits (MaxSessions 10, MaxStartups 10:30:100), as users' servers have them: not raised here
start_sshd $NS $NS_IP "$RDIR" "$(cat <<EOF
ListenAddress $NS_IP
Port 22
HostKey $RDIR/ssh_host_ed25519_key
PidFile $RDIR/sshd.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
AllowUsers $USER_OK $USER_NO
AuthorizedKeysFile /etc/tg-remote/authorized_keys/%u
SetEnv DOCKER_HOST=unix://$SOCK
Subsystem sftp internal-sftp
EOF
)"

# --- client side -----------------------------------------------------------------------
ssh_alias tg-remote $NS_IP $USER_OK "$CDIR/id_ed25519" "$CDIR/known_hosts" "$RDIR/ssh_host_ed25519_key.pub"

cat >"$STATE/remote.env" <<EOF
TG_REMOTE_ALIAS=tg-remote
TG_REMOTE_HOST=$NS_IP
TG_REMOTE_PORT=22
TG_REMOTE_USER=$USER_OK
TG_REMOTE_NODOCKER_USER=$USER_NO
TG_REMOTE_KEY=$CDIR/id_ed25519
TG_REMOTE_KNOWN_HOSTS=$CDIR/known_hosts
TG_REMOTE_DOCKER_HOST=unix://$SOCK
TG_REMOTE_NETNS=$NS
TG_REGISTRY=$REGISTRY
EOF
log "remote ready: ssh tg-remote ($USER_OK@$NS_IP), its engine $SOCK, registry $REGISTRY"
