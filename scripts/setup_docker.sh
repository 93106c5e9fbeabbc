#!/usr/bin/env bash
# Idempotent: make a local Docker engine answer, and make the base image
# (python:X.Y-slim for the local interpreter) available, building a local
# stand-in from Debian packages when no registry can serve it.
set -euo pipefail

STATE=${TG_PIPELINE_STATE:-/var/lib/tg-pipeline-test}
PYVER=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
BASE=${TG_PIPELINE_BASE_IMAGE:-python:${PYVER}-slim}
mkdir -p "$STATE"

log() { printf '[setup_docker] %s\n' "$*" >&2; }

apt_install() {
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

if ! engine_answers; then
    command -v dockerd >/dev/null 2>&1 || apt_install docker.io
    if ! engine_answers; then
        log "starting dockerd (log: $STATE/dockerd.log)"
        # setsid: the engine must outlive this script and the shell that ran it
        setsid nohup dockerd >"$STATE/dockerd.log" 2>&1 < /dev/null &
        for _ in $(seq 1 60); do engine_answers && break; sleep 1; done
        engine_answers || { log "dockerd did not start, see $STATE/dockerd.log"; tail -20 "$STATE/dockerd.log" >&2; exit 1; }
    fi
fi

if docker image inspect "$BASE" >/dev/null 2>&1; then
    log "base image $BASE present"
    exit 0
fi
if timeout 60 docker pull -q "$BASE" >/dev/null 2>&1; then
    log "pulled $BASE"
    exit 0
fi

# Stand-in: a Debian bookworm root file system with python3/pip, imported as an image.
log "cannot pull $BASE: building a local stand-in from Debian packages"
ROOTFS_IMAGE=tg-pipeline/bookworm-python:rootfs
if ! docker image inspect "$ROOTFS_IMAGE" >/dev/null 2>&1; then
    apt_install debootstrap
    # the mirror the apt sources name (the first plain Debian one)
    MIRROR=$( (cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true) \
             | grep -oE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' | awk 'NR==1 {print $2}' || true)
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
    ROOTFS="$STATE/rootfs"
    if [ ! -f "$ROOTFS/.complete" ]; then
        rm -rf "$ROOTFS"
        log "debootstrap from $MIRROR (about a minute)"
        debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
            bookworm "$ROOTFS" "$MIRROR" >"$STATE/debootstrap.log" 2>&1 \
            || { tail -20 "$STATE/debootstrap.log" >&2; exit 1; }
        rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
        touch "$ROOTFS/.complete"
    fi
    tar -C "$ROOTFS" --exclude=./.complete -c . | docker import - "$ROOTFS_IMAGE" >/dev/null
fi

CTX=$(mktemp -d)
trap 'rm -rf "$CTX"' EXIT
# The host's CA bundle: containers reach PyPI only through this machine's TLS-intercepting proxy.
cp /etc/ssl/certs/ca-certificates.crt "$CTX/ca-certificates.crt"
cat >"$CTX/Dockerfile" <<DOCKERFILE
FROM $ROOTFS_IMAGE
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN ln -sf /usr/bin/python3 /usr/local/bin/python && ln -sf /usr/bin/pip3 /usr/local/bin/pip
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    LANG=C.UTF-8
CMD ["python3"]
DOCKERFILE
DOCKER_BUILDKIT=0 docker build -q -t "$BASE" "$CTX" >/dev/null
log "built stand-in $BASE"
