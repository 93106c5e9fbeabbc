#!/usr/bin/env bash
# Idempotent: a simulated remote Docker host and a registry both engines reach.
#   - network namespace tgremote (veth 10.231.0.1/30 here <-> 10.231.0.2/30 there)
#   - a second dockerd in it: own data-root, exec-root, socket, so images really travel
#   - sshd in it: key-only login for tgremote (may use Docker) and tgnodocker (may not);
#     sessions get DOCKER_HOST through sshd's SetEnv
#   - Debian's docker-registry on 127.0.0.1:5000, reachable as 127.0.0.1:5000 from the
#     namespace too (socat both ways), so one image name works on both engines
#   - client side: key, known_hosts, and a `Host tg-remote` block in ~/.ssh/config
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
NSENTER=(nsenter --net=/run/netns/$NS)

log() { printf '[setup_remote] %s\n' "$*" >&2; }
die() { log "$1"; [ -n "${2:-}" ] && [ -f "$2" ] && tail -20 "$2" >&2; exit 1; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_for() { for _ in $(seq 1 "${2:-60}"); do eval "$1" && return 0; sleep 0.5; done; return 1; }
start() {  # pidfile logfile command...: start detached, outliving this script
    local pidfile=$1 logfile=$2; shift 2
    setsid nohup "$@" >"$logfile" 2>&1 < /dev/null &
    echo $! >"$pidfile"
}

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
if [ ! -e /run/netns/$NS ]; then
    log "creating network namespace $NS"
    ip netns add $NS
fi
if ! ip link show $HOST_IF >/dev/null 2>&1; then
    ip link add $HOST_IF type veth peer name $NS_IF
    ip link set $NS_IF netns $NS
    ip addr add $HOST_IP/30 dev $HOST_IF
    ip link set $HOST_IF up
    ip -n $NS addr add $NS_IP/30 dev $NS_IF
    ip -n $NS link set $NS_IF up
    ip -n $NS link set lo up
    ip -n $NS route add default via $HOST_IP
fi
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

# --- remote engine -----------------------------------------------------------------
if ! alive $RRUN/docker.pid || ! timeout 5 docker -H unix://$SOCK info >/dev/null 2>&1; then
    log "starting the remote dockerd (log: $RDIR/dockerd.log)"
    rm -f $RRUN/docker.pid $SOCK
    start "$RDIR/dockerd.launcher.pid" "$RDIR/dockerd.log" "${NSENTER[@]}" dockerd \
        --data-root "$RDIR/docker" --exec-root "$RRUN/exec" -H unix://$SOCK \
        --pidfile $RRUN/docker.pid --group $GROUP
    wait_for "timeout 5 docker -H unix://$SOCK info >/dev/null 2>&1" 120 \
        || die "the remote dockerd did not start" "$RDIR/dockerd.log"
fi
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
if ! alive "$REGDIR/socat-host.pid"; then
    start "$REGDIR/socat-host.pid" "$REGDIR/socat-host.log" \
        socat TCP-LISTEN:5000,bind=$HOST_IP,fork,reuseaddr TCP:$REGISTRY
fi
if ! alive "$REGDIR/socat-ns.pid"; then
    start "$REGDIR/socat-ns.pid" "$REGDIR/socat-ns.log" "${NSENTER[@]}" \
        socat TCP-LISTEN:5000,bind=127.0.0.1,fork,reuseaddr TCP:$HOST_IP:5000
fi
wait_for "${NSENTER[*]} curl -fsS -m 3 http://$REGISTRY/v2/ >/dev/null 2>&1" 30 \
    || die "the registry is not reachable from the namespace" "$REGDIR/socat-ns.log"

# --- sshd ----------------------------------------------------------------------------
[ -f "$RDIR/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$RDIR/ssh_host_ed25519_key"
[ -f "$CDIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C tg-pipeline-test -f "$CDIR/id_ed25519"
for u in $USER_OK $USER_NO; do
    install -m 644 "$CDIR/id_ed25519.pub" /etc/tg-remote/authorized_keys/$u
done
# OpenSSH's own limits (MaxSessions 10, MaxStartups 10:30:100), as users' servers have them: not raised here
cat >"$RDIR/sshd_config.new" <<EOF
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
changed=
if cmp -s "$RDIR/sshd_config.new" "$RDIR/sshd_config"; then
    rm -f "$RDIR/sshd_config.new"
else
    /usr/sbin/sshd -t -f "$RDIR/sshd_config.new" || die "bad sshd_config"
    mv "$RDIR/sshd_config.new" "$RDIR/sshd_config"
    changed=yes
fi
sshd_ok() { timeout 3 bash -c "exec 3<>/dev/tcp/$NS_IP/22" 2>/dev/null; }
if [ -n "$changed" ] || ! alive "$RDIR/sshd.pid" || ! sshd_ok; then
    log "starting sshd on $NS_IP:22${changed:+ (its config changed)}"
    if alive "$RDIR/sshd.pid"; then  # the listener only: open sessions keep their own processes
        old=$(cat "$RDIR/sshd.pid")
        kill "$old" 2>/dev/null || true
        wait_for "! kill -0 $old 2>/dev/null" 20 || die "the old sshd ($old) did not stop"
    fi
    /usr/sbin/sshd -t -f "$RDIR/sshd_config" || die "bad sshd_config"
    "${NSENTER[@]}" /usr/sbin/sshd -f "$RDIR/sshd_config" -E "$RDIR/sshd.log"
    wait_for sshd_ok 30 || die "sshd did not start" "$RDIR/sshd.log"
fi

# --- client side -----------------------------------------------------------------------
echo "$NS_IP $(cut -d' ' -f1,2 "$RDIR/ssh_host_ed25519_key.pub")" >"$CDIR/known_hosts"
mkdir -p -m 700 ~/.ssh
touch ~/.ssh/config ~/.ssh/known_hosts
chmod 600 ~/.ssh/config
sed -i '/^# >>> tg-pipeline test remote >>>$/,/^# <<< tg-pipeline test remote <<<$/d' ~/.ssh/config
cat >>~/.ssh/config <<EOF
# >>> tg-pipeline test remote >>>
Host tg-remote
    HostName $NS_IP
    User $USER_OK
    Port 22
    IdentityFile $CDIR/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $CDIR/known_hosts
# <<< tg-pipeline test remote <<<
EOF
grep -v "^$NS_IP " ~/.ssh/known_hosts >~/.ssh/known_hosts.tmp || true
cat "$CDIR/known_hosts" >>~/.ssh/known_hosts.tmp
mv ~/.ssh/known_hosts.tmp ~/.ssh/known_hosts

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
