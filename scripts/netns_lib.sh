# Sourced by setup_remote.sh and setup_swarm_remote.sh: the pieces of a simulated host, each idempotent
# (re-running restarts only what died). Set LOG_TAG before sourcing.
#   make_netns NS HOST_IF NS_IF HOST_IP NS_IP       a network namespace and a veth /30 to this machine
#   start_ns_dockerd NS SOCK RUNDIR STATEDIR [ARGS]  a dockerd in NS: own data-root, exec-root, socket
#   bridge_registry NS HOST_IP PIDDIR               127.0.0.1:5000 in NS reaches the registry here (socat)
#   start_sshd NS IP STATEDIR CONFIG_TEXT           an sshd in NS listening on IP (restarted when CONFIG changed)
#   ssh_alias NAME IP USER KEY KNOWN_HOSTS          a `Host NAME` block in ~/.ssh/config, the host key trusted

log() { printf '[%s] %s\n' "${LOG_TAG:-setup}" "$*" >&2; }
die() { log "$1"; [ -n "${2:-}" ] && [ -f "$2" ] && tail -20 "$2" >&2; exit 1; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_for() { for _ in $(seq 1 "${2:-60}"); do eval "$1" && return 0; sleep 0.5; done; return 1; }
start() {  # pidfile logfile command...: start detached, outliving this script
    local pidfile=$1 logfile=$2; shift 2
    setsid nohup "$@" >"$logfile" 2>&1 < /dev/null &
    echo $! >"$pidfile"
}

make_netns() {
    local ns=$1 host_if=$2 ns_if=$3 host_ip=$4 ns_ip=$5
    if [ ! -e "/run/netns/$ns" ]; then
        log "creating network namespace $ns"
        ip netns add "$ns"
    fi
    if ! ip link show "$host_if" >/dev/null 2>&1; then
        ip link add "$host_if" type veth peer name "$ns_if"
        ip link set "$ns_if" netns "$ns"
        ip addr add "$host_ip/30" dev "$host_if"
        ip link set "$host_if" up
        ip -n "$ns" addr add "$ns_ip/30" dev "$ns_if"
        ip -n "$ns" link set "$ns_if" up
        ip -n "$ns" link set lo up
        ip -n "$ns" route add default via "$host_ip"
    fi
}

# start_ns_dockerd NS SOCK RUNDIR STATEDIR [dockerd arguments...]: started when its socket does not answer
start_ns_dockerd() {
    local ns=$1 sock=$2 run=$3 dir=$4; shift 4
    if alive "$run/docker.pid" && timeout 5 docker -H "unix://$sock" info >/dev/null 2>&1; then
        return 0
    fi
    log "starting the dockerd of $ns (log: $dir/dockerd.log)"
    mkdir -p "$run" "$dir"
    rm -f "$run/docker.pid" "$sock"
    start "$dir/dockerd.launcher.pid" "$dir/dockerd.log" nsenter --net="/run/netns/$ns" dockerd \
        --data-root "$dir/docker" --exec-root "$run/exec" -H "unix://$sock" --pidfile "$run/docker.pid" "$@"
    wait_for "timeout 5 docker -H unix://$sock info >/dev/null 2>&1" 120 \
        || die "the dockerd of $ns did not start" "$dir/dockerd.log"
}

# stop_ns_dockerd RUNDIR: stop the dockerd whose pidfile is there, and wait until it is gone
stop_ns_dockerd() {
    local run=$1 pid
    alive "$run/docker.pid" || return 0
    pid=$(cat "$run/docker.pid")
    kill "$pid"
    wait_for "! kill -0 $pid 2>/dev/null" 60 || die "the dockerd $pid did not stop"
}

bridge_registry() {  # the registry (127.0.0.1:5000 here) as 127.0.0.1:5000 in NS, through HOST_IP:5000
    local ns=$1 host_ip=$2 piddir=$3 registry=127.0.0.1:5000
    if ! alive "$piddir/socat-host.pid"; then
        start "$piddir/socat-host.pid" "$piddir/socat-host.log" \
            socat TCP-LISTEN:5000,bind="$host_ip",fork,reuseaddr TCP:$registry
    fi
    if ! alive "$piddir/socat-ns.pid"; then
        start "$piddir/socat-ns.pid" "$piddir/socat-ns.log" nsenter --net="/run/netns/$ns" \
            socat TCP-LISTEN:5000,bind=127.0.0.1,fork,reuseaddr TCP:"$host_ip":5000
    fi
    wait_for "nsenter --net=/run/netns/$ns curl -fsS -m 3 http://$registry/v2/ >/dev/null 2>&1" 30 \
        || die "the registry is not reachable from the namespace $ns" "$piddir/socat-ns.log"
}

# start_sshd NS IP STATEDIR CONFIG_TEXT: STATEDIR/sshd_config holds CONFIG_TEXT (PidFile STATEDIR/sshd.pid)
start_sshd() {
    local ns=$1 ip=$2 dir=$3 text=$4 changed= old
    printf '%s\n' "$text" >"$dir/sshd_config.new"
    if cmp -s "$dir/sshd_config.new" "$dir/sshd_config"; then
        rm -f "$dir/sshd_config.new"
    else
        /usr/sbin/sshd -t -f "$dir/sshd_config.new" || die "bad sshd_config"
        mv "$dir/sshd_config.new" "$dir/sshd_config"
        changed=yes
    fi
    sshd_ok() { timeout 3 bash -c "exec 3<>/dev/tcp/$1/22" 2>/dev/null; }
    if [ -n "$changed" ] || ! alive "$dir/sshd.pid" || ! sshd_ok "$ip"; then
        log "starting sshd on $ip:22${changed:+ (its config changed)}"
        if alive "$dir/sshd.pid"; then  # the listener only: open sessions keep their own processes
            old=$(cat "$dir/sshd.pid")
            kill "$old" 2>/dev/null || true
            wait_for "! kill -0 $old 2>/dev/null" 20 || die "the old sshd ($old) did not stop"
        fi
        /usr/sbin/sshd -t -f "$dir/sshd_config" || die "bad sshd_config"
        nsenter --net="/run/netns/$ns" /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
        wait_for "sshd_ok $ip" 30 || die "sshd did not start" "$dir/sshd.log"
    fi
}

# ssh_alias NAME IP USER KEY KNOWN_HOSTS HOST_KEY_PUB: the block `# >>> tg-pipeline test NAME >>>` rewritten
ssh_alias() {
    local name=$1 ip=$2 user=$3 key=$4 known=$5 hostkey=$6 mark
    echo "$ip $(cut -d' ' -f1,2 "$hostkey")" >"$known"
    mkdir -p -m 700 ~/.ssh
    touch ~/.ssh/config ~/.ssh/known_hosts
    chmod 600 ~/.ssh/config
    mark="tg-pipeline test ${name#tg-}"
    sed -i "/^# >>> $mark >>>\$/,/^# <<< $mark <<<\$/d" ~/.ssh/config
    cat >>~/.ssh/config <<EOF
# >>> $mark >>>
Host $name
    HostName $ip
    User $user
    Port 22
    IdentityFile $key
    IdentitiesOnly yes
    UserKnownHostsFile $known
# <<< $mark <<<
EOF
    grep -v "^$ip " ~/.ssh/known_hosts >~/.ssh/known_hosts.tmp || true
    cat "$known" >>~/.ssh/known_hosts.tmp
    mv ~/.ssh/known_hosts.tmp ~/.ssh/known_hosts
}
