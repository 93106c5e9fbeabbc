#!/usr/bin/env bash
# Limit what this host sends to the simulated remote, as over a slow uplink (the benchmark's
# bandwidth-limited rows). Idempotent.
#   shape_link.sh on RATE    e.g. on 20mbit: an htb token bucket on the host-side veth
#   shape_link.sh off        remove it (nothing shaped; fine when it is already off)
#   shape_link.sh status     print the qdisc, its classes and their counters
# Only packets whose SOURCE is this host's end of the link (10.231.0.1: SSH, the registry seen
# from the remote) go through the RATE class; everything else leaving on the veth, such as the
# remote's downloads from the package index forwarded through this host, stays unshaped.
# The link is $TG_TEST_LINK when set (the test target's, tests/target.py), else the veth of setup_remote.sh.
set -euo pipefail

DEV=${TG_TEST_LINK:-tgr-host}
FAST=10gbit  # the default class: in effect unshaped

usage() { echo "usage: $0 on RATE | off | status" >&2; exit 2; }
off() { tc qdisc del dev $DEV root 2>/dev/null || true; }

ip link show $DEV >/dev/null 2>&1 || { echo "no $DEV here: run scripts/setup_remote.sh first" >&2; exit 1; }
SRC=$(ip -4 -o addr show dev "$DEV" | awk '{print $4; exit}' | cut -d/ -f1)/32  # this host's end of the link
case "${1:-}" in
    on)
        RATE=${2:-}
        [ -n "$RATE" ] || usage
        off  # start from nothing, so a second `on` (perhaps at another rate) leaves exactly one set-up
        tc qdisc add dev $DEV root handle 1: htb default 20
        tc class add dev $DEV parent 1: classid 1:10 htb rate "$RATE" ceil "$RATE" quantum 60000
        tc class add dev $DEV parent 1: classid 1:20 htb rate $FAST ceil $FAST burst 1mb cburst 1mb quantum 200000
        tc filter add dev $DEV parent 1: protocol ip prio 1 u32 match ip src $SRC flowid 1:10
        echo "shaping $DEV: from $SRC at $RATE, the rest unshaped"
        ;;
    off)
        off
        echo "no shaping on $DEV"
        ;;
    status)
        tc qdisc show dev $DEV
        tc -s class show dev $DEV
        tc filter show dev $DEV
        ;;
    *) usage ;;
esac
