# netns-teardown (guest shell, busybox sh): a container's network namespace, whose veth
# end kbp.ko serves as ceth0@PID, is destroyed (its only process killed) while kbp.ko
# loads, and while it unloads. Every operation must finish within BOUND seconds: the
# insmod, the rmmod, the namespace's cleanup (veth0, the peer in the guest's namespace,
# is deleted with it) and a new namespace made afterwards (setup_net takes
# pernet_ops_rwsem, which a stuck register/unregister_netdevice_notifier would hold up).
# Every background job writes to a file, never to the script's output: a job stuck in
# the kernel would otherwise keep the agent's pipe open, and the agent would wait for
# it instead of returning what the script printed.
# Usage: [UNLOAD_DELAYS='0 0.01 ..'] sh netns_teardown.sh MODULE PHASE BOUND, PHASE load,
# unload or both (the
# loads, then the unloads; the xtask fault runs each phase as its own command, within
# the agent's 300 s per command). Prints one line per operation with
# its time, "STUCK ..." and the task's kernel stack for one over its bound (and stops:
# the guest is wedged then), and "netns-teardown: done" at the end.
M=${1:-/lib/modules/kbp.ko}
PHASE=${2:-both}
BOUND=${3:-30}
now() { read -r u _ < /proc/uptime; echo "$u"; }
# bounded PID LABEL WHAT: waits for background job PID at most BOUND s; prints
# "NETNS-TIME LABEL SECONDS rc=RC WHAT", or "STUCK LABEL ..." with the kernel stacks of
# the tasks in D state.
bounded() {
    s=$(now); n=0
    while [ -d /proc/$1 ] && ! grep -q '^State:[[:space:]]*Z' /proc/$1/status 2>/dev/null; do
        n=$((n + 1))
        if [ $n -gt $((BOUND * 20)) ]; then
            echo "STUCK $2 ($3): pid $1 still running after ${BOUND} s ($(cat /proc/$1/wchan 2>/dev/null))"
            cat /proc/$1/stack 2>/dev/null
            for t in /proc/[0-9]*; do
                if grep -q '^State:[[:space:]]*D' $t/status 2>/dev/null; then
                    echo "D-state: $(cat $t/comm) ($(basename $t))"
                    cat $t/stack 2>/dev/null
                fi
            done
            return 1
        fi
        sleep 0.05
    done
    wait $1
    rc=$?
    echo "NETNS-TIME $2 $(awk "BEGIN { printf \"%.2f\", $(now) - $s }") rc=$rc $3"
}
container() {
    unshare -n sleep 1000000 > /dev/null 2>&1 &
    P=$!
    sleep 0.2
    kbp-ctl veth veth0 ceth0 $P > /dev/null && ip link set veth0 up &&
        nsenter -t $P -n ip link set ceth0 up &&
        kbp-ctl offload veth0 gro on > /dev/null &&
        nsenter -t $P -n kbp-ctl offload ceth0 gro on > /dev/null
}
# after: the namespace's cleanup ends (veth0 goes) and a new namespace can be made.
after() {
    (while ip link show veth0 > /dev/null 2>&1; do sleep 0.05; done) > /dev/null 2>&1 &
    bounded $! netns-cleanup "(veth pair deleted with the namespace)" || exit 1
    unshare -n true > /dev/null 2>&1 &
    bounded $! netns-new "(a new namespace made)" || exit 1
    if grep -q '^kbp ' /proc/modules; then
        rmmod kbp > /dev/null 2>&1 &
        bounded $! netns-rmmod "(module left loaded by the insmod)" || exit 1
    fi
}
# A guest left wedged by an earlier run (or phase) shows here, not as a later hang.
unshare -n true > /dev/null 2>&1 &
bounded $! netns-new "(a new namespace, before the $PHASE phase)" || exit 1
if [ "$PHASE" != unload ]; then
    # Load: the namespace goes while insmod runs (after its lookup of ceth0@PID, for
    # the longer delays: the old load took its references first, then created its
    # threads and registered two ftrace hooks before its notifier).
    for d in 0 0.02 0.05 0.1 0.2 0.4; do
        container || { echo "container setup failed"; exit 1; }
        insmod "$M" ifaces=ceth0@$P cpus=3 > /dev/null 2>&1 &
        I=$!
        sleep $d
        kill $P
        bounded $I netns-insmod "(namespace killed $d s after insmod started)" || exit 1
        after
    done
fi
if [ "$PHASE" != load ]; then
    # Unload: the namespace goes just before (d >= 0: killed, then rmmod d s later) or
    # just after (d < 0) rmmod starts.
    for d in ${UNLOAD_DELAYS:-0 0.01 0.03 0.1 -0.01 -0.05}; do
        container || { echo "container setup failed"; exit 1; }
        insmod "$M" ifaces=veth0,ceth0@$P cpus=3 > /dev/null 2>&1 &
        bounded $! netns-insmod "(before the unload's race)" || exit 1
        if ! grep -q '^kbp ' /proc/modules; then
            echo "NETNS-REFUSED insmod ifaces=veth0,ceth0@$P"; kill $P; after; continue
        fi
        case $d in
        -*) rmmod kbp > /dev/null 2>&1 & R=$!; sleep ${d#-}; kill $P ;;
        *) kill $P; sleep $d; rmmod kbp > /dev/null 2>&1 & R=$! ;;
        esac
        bounded $R netns-rmmod "(namespace killed at $d s, negative: after rmmod started)" || exit 1
        after
    done
fi
echo "netns-teardown: done"
