#!/usr/bin/env bash
# A multi-host cluster on one machine: N network namespaces ("hosts") on a private subnet
# of their own, each with its own UTS hostname, joined through a bridge that lives in a
# further namespace (so no device or route of the machine's own namespace is touched), each
# host's link optionally shaped with tc; then mpirun across them over TCP as if they were
# separate machines. Everything it creates is removed at exit, also on failure or interrupt.
# Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN) and a kernel with network namespaces, veth
# and bridge devices. See docs/multihost.md.
#
# Usage: launch/local-cluster.sh --hosts N --slots S [--rate 1gbit] [--delay 0.2ms] -- CMD [ARGS...]
#        launch/local-cluster.sh --check     (exit 0 when namespaces can be made here)
# CMD runs on every one of the N x S ranks; output and exit code are mpirun's.
#   --rate R    tbf on both directions of every host's link (tc rate syntax: 10gbit, 200mbit)
#   --delay D   netem delay on every link, each direction (refused where netem is missing)
set -euo pipefail
me=local-cluster.sh
die() { echo "$me: $*" >&2; exit 2; }
usage() { sed -n "10,14p" "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

hosts=2 slots=1 rate="" delay="" check=0
while [ $# -gt 0 ]; do
    case "$1" in
        --hosts) [ $# -ge 2 ] || usage; hosts="$2"; shift 2 ;;
        --slots) [ $# -ge 2 ] || usage; slots="$2"; shift 2 ;;
        --rate) [ $# -ge 2 ] || usage; rate="$2"; shift 2 ;;
        --delay) [ $# -ge 2 ] || usage; delay="$2"; shift 2 ;;
        --check) check=1; shift ;;
        -h|--help) usage ;;
        --) shift; break ;;
        *) die "unknown option '$1' (the command goes after --)" ;;
    esac
done
[[ "$hosts" =~ ^[0-9]+$ ]] && [ "$hosts" -ge 1 ] && [ "$hosts" -le 200 ] || die "--hosts must be 1..200, got '$hosts'"
[[ "$slots" =~ ^[0-9]+$ ]] && [ "$slots" -ge 1 ] || die "--slots must be a positive integer, got '$slots'"
[ -z "$rate" ] || [[ "$rate" =~ ^[0-9]+(\.[0-9]+)?([kmgt]?bit)$ ]] || die "--rate must look like 10gbit, 1gbit or 200mbit, got '$rate'"
[ -z "$delay" ] || [[ "$delay" =~ ^[0-9]+(\.[0-9]+)?(us|ms|s)$ ]] || die "--delay must look like 0.2ms, got '$delay'"
[ "$check" -eq 1 ] || [ $# -gt 0 ] || die "no command: usage: $me --hosts N --slots S [--rate R] [--delay D] -- CMD [ARGS...]"
for tool in ip tc unshare; do command -v "$tool" >/dev/null || die "needs '$tool' (iproute2, util-linux)"; done
[ "$check" -eq 1 ] || command -v mpirun >/dev/null || die "needs mpirun (Open MPI) on PATH"
[ "$(id -u)" -eq 0 ] || die "needs root to create network namespaces (run as root, or use launch/mpirun.sh on one host)"

# Unique per invocation, so concurrent rigs do not clash (namespace names are global).
tag="zr$$"
switch="${tag}sw"
made=()          # namespaces created, removed by cleanup
work=""          # scratch directory (agent script, hostfile)
job=""           # pid of the mpirun we started

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [ -n "$job" ] && kill -0 "$job" 2>/dev/null; then
        kill -TERM "$job" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$job" 2>/dev/null || true
    fi
    # Whatever still runs inside our namespaces was started by this rig.
    local ns pids
    for ns in "${made[@]}"; do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    done
    for ns in "${made[@]}"; do ip netns delete "$ns" 2>/dev/null || true; done
    [ -z "$work" ] || rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

mkns() {
    local err
    err=$(ip netns add "$1" 2>&1) || die "cannot create network namespace '$1' (${err:-ip netns add failed}); this rig needs a kernel with network namespaces and root"
    made+=("$1")
}

if [ "$check" -eq 1 ]; then
    mkns "${tag}probe"
    err=$(ip netns exec "${tag}probe" ip link add v0 type veth peer name v1 2>&1) || die "cannot create veth devices ($err)"
    err=$(ip netns exec "${tag}probe" ip link add b0 type bridge 2>&1) || die "cannot create bridge devices ($err)"
    echo "$me: network namespaces, veth and bridge devices are available"
    exit 0
fi

# A private /24 chosen from the pid; it exists only inside the rig's namespaces.
subnet="10.$(( 200 + $$ % 50 )).$(( ($$ / 50) % 256 ))"
cidr="$subnet.0/24"
ranks=$(( hosts * slots ))

# tc arguments for one direction of one link: tbf for --rate, netem for --delay (with
# tbf below it when both are given). tbf's bucket holds about 5 ms at the rate (at least
# 64 KiB), enough for the kernel's timer granularity and for GSO packets.
shape() {  # shape NAMESPACE DEVICE
    local ns=$1 dev=$2 burst err
    if [ -n "$rate" ]; then
        burst=$(tc_burst "$rate")
        if [ -n "$delay" ]; then
            err=$(ip netns exec "$ns" tc qdisc add dev "$dev" root handle 1: netem delay "$delay" 2>&1) || die "--delay needs the netem qdisc, which this kernel lacks ($err); leave --delay out"
            err=$(ip netns exec "$ns" tc qdisc add dev "$dev" parent 1:1 handle 10: tbf rate "$rate" burst "$burst" latency 25ms 2>&1) || die "tc tbf on $dev failed: $err"
        else
            err=$(ip netns exec "$ns" tc qdisc add dev "$dev" root tbf rate "$rate" burst "$burst" latency 25ms 2>&1) || die "tc tbf on $dev failed: $err"
        fi
    elif [ -n "$delay" ]; then
        err=$(ip netns exec "$ns" tc qdisc add dev "$dev" root netem delay "$delay" 2>&1) || die "--delay needs the netem qdisc, which this kernel lacks ($err); leave --delay out"
    fi
}
tc_burst() {
    awk -v r="$1" 'BEGIN {
        n = r + 0; u = r; sub(/^[0-9.]+/, "", u)
        m = (u == "kbit") ? 1e3 : (u == "mbit") ? 1e6 : (u == "gbit") ? 1e9 : (u == "tbit") ? 1e12 : 1
        b = n * m / 8 / 200; if (b < 65536) b = 65536
        printf "%d", b }'
}

# The switch: a bridge in its own namespace; host i's eth0 is a veth whose peer is port hi.
mkns "$switch"
ip netns exec "$switch" ip link add br0 type bridge || die "cannot create a bridge device"
ip netns exec "$switch" ip link set br0 up
ip netns exec "$switch" ip link set lo up
hostfile_lines=()
for i in $(seq 0 $(( hosts - 1 ))); do
    ns="${tag}h$i"
    mkns "$ns"
    ip netns exec "$switch" ip link add "h$i" type veth peer name eth0 netns "$ns" || die "cannot create veth devices"
    ip netns exec "$switch" ip link set "h$i" master br0
    ip netns exec "$switch" ip link set "h$i" up
    ip netns exec "$ns" ip addr add "$subnet.$(( i + 1 ))/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    ip netns exec "$ns" ip link set lo up
    shape "$ns" eth0        # host -> switch
    shape "$switch" "h$i"   # switch -> host
    hostfile_lines+=("$subnet.$(( i + 1 )) slots=$slots")
done

work=$(mktemp -d "/tmp/$tag.XXXXXX")
printf '%s\n' "${hostfile_lines[@]}" > "$work/hostfile"
# The rsh agent: mpirun calls it as `agent HOST COMMAND...` the way it would call ssh.
# It enters HOST's namespace, gives it its own UTS hostname, and runs the command through
# a shell as sshd would.
cat > "$work/agent" <<EOF
#!/usr/bin/env bash
host="\$1"; shift
i=\$(( \${host##*.} - 1 ))
exec ip netns exec "${tag}h\$i" unshare --uts -- /bin/sh -c 'hostname "\$0" && exec /bin/sh -c "\$*"' "${tag}-h\$i" "\$@"
EOF
chmod +x "$work/agent"

cores=$(nproc)
threads=$(( cores / ranks )); [ "$threads" -lt 1 ] && threads=1
# Oversubscribed (the hosts share this machine's cores): zero-train's waiting ranks
# should yield their core soon, which they cannot tell from their per-host rank count.
spins=()
[ "$ranks" -gt "$cores" ] && [ -z "${ZT_COMM_SPINS:-}" ] && spins=(-x ZT_COMM_SPINS=16)
# zero-train's tuning variables (ZT_*) reach every rank, as mpirun -x would pass them.
for v in $(compgen -e | grep '^ZT_' || true); do spins+=(-x "$v"); done
# mpirun runs on host 0, like a job launched from the first node.
ip netns exec "${tag}h0" unshare --uts -- /bin/sh -c 'hostname "$0" && exec "$@"' "${tag}-h0" \
    mpirun --allow-run-as-root -n "$ranks" --hostfile "$work/hostfile" --map-by slot --bind-to none \
    --mca plm_rsh_agent "$work/agent" --mca plm_rsh_no_tree_spawn 1 \
    --mca pml ob1 --mca btl tcp,self \
    --mca btl_tcp_if_include "$cidr" --mca oob_tcp_if_include "$cidr" \
    --mca orte_base_help_aggregate 0 \
    -x OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-$threads}" "${spins[@]}" "$@" &
job=$!
set +e
wait "$job"
rc=$?
set -e
job=""
exit "$rc"
