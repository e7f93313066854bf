#!/bin/bash
# Run from anywhere: cargo xtask guest-run in this checkout (takes the machine-wide guest lock).
# Issue 14, item 2: does virtio-net carry traffic under -icount shift=0,sleep=off, and is
# the guest's busy time per packet repeatable? One vCPU (maxcpus=1, others left offline
# in this experiment so that no idle period is open at a snapshot).
set -e
cd "$(dirname "$0")/../.."
ARM=$(cat <<'EOF'
cat /proc/cmdline; echo online after boot: $(cat /sys/devices/system/cpu/online); for c in 1 2 3; do echo 0 > /sys/devices/system/cpu/cpu$c/online; done; echo online now: $(cat /sys/devices/system/cpu/online); cd /sys/kernel/tracing && echo 'kbp_idle u64 dur' >> synthetic_events && echo 'hist:keys=common_cpu:its=common_timestamp if next_pid == 0' > events/sched/sched_switch/trigger && echo 'hist:keys=common_cpu:idur=common_timestamp-$its:onmatch(sched.sched_switch).trace(kbp_idle,$idur) if prev_pid == 0' >> events/sched/sched_switch/trigger && echo 'hist:keys=common_cpu:vals=dur' > events/synthetic/kbp_idle/trigger && echo armed
EOF
)
# busy ns = (now1-now0) - (idle1-idle0), over one command.
MEASURE=$(cat <<'EOF'
snap() { awk '/^now at/{n=$3} END{printf "%s ", n}' /proc/timer_list; awk '{for(i=1;i<NF;i++) if($i=="dur:") s+=$(i+1)} END{print s+0}' /sys/kernel/tracing/events/synthetic/kbp_idle/hist; }; m() { set -- $(snap); n0=$1; i0=$2; eval "$CMD" > /tmp/out 2>&1; set -- $(snap); echo "$LABEL: busy $(( ($1-n0) - ($2-i0) )) ns over $(( $1-n0 )) ns; $(tail -2 /tmp/out | tr '\n' ' ')"; }
EOF
)
run() { echo "$MEASURE; LABEL='$1'; CMD='$2'; m"; }
exec cargo xtask guest-run --icount "$ARM" \
  "$(run 'baseline sleep 2' 'sleep 2')" \
  "$(run 'baseline sleep 2' 'sleep 2')" \
  "$(run 'napi ping 500' 'ping -q -c 500 -i 0.01 10.77.0.1')" \
  "$(run 'napi ping 500' 'ping -q -c 500 -i 0.01 10.77.0.1')" \
  "$(run 'napi ping 500' 'ping -q -c 500 -i 0.01 10.77.0.1')" \
  "insmod /lib/modules/kbp.ko ifaces=eth0 cpus=0 mode=adaptive && sleep 1 && cat /sys/kernel/debug/kbp/stats | head -5" \
  "$(run 'kbp-adaptive baseline sleep 2' 'sleep 2')" \
  "$(run 'kbp-adaptive ping 500' 'ping -q -c 500 -i 0.01 10.77.0.1')" \
  "$(run 'kbp-adaptive ping 500' 'ping -q -c 500 -i 0.01 10.77.0.1')" \
  "$(run 'kbp-adaptive ping 500' 'ping -q -c 500 -i 0.01 10.77.0.1')"
