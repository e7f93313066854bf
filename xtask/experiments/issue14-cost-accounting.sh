#!/bin/bash
# Run from anywhere: cargo xtask guest-run --icount in this checkout (takes the machine-wide guest lock).
# Issue 14, item 2, the cost stage's accounting under -icount shift=0,sleep=on, one vCPU: busy
# time two ways (the clock minus the halted spans, cpu_idle enter to the first interrupt event;
# and the clock minus the idle task's time, sched_switch), over no traffic, 500 guest pings in
# napi mode, kbp.ko in spin mode (cost per round), and in adaptive mode with a 1000 and a 2000 µs
# spin window (rounds, polls and empty polls per ping from kbp.ko's stats file).
set -e
cd "$(dirname "$0")/../.."
ARM=$(cat <<'EOF'
for c in 1 2 3; do echo 0 > /sys/devices/system/cpu/cpu$c/online; done; echo online now: $(cat /sys/devices/system/cpu/online); cd /sys/kernel/tracing && echo 'kbp_idle u64 dur' >> synthetic_events && echo 'kbp_halt u64 dur' >> synthetic_events && echo 'hist:keys=common_cpu:its=common_timestamp if next_pid == 0' > events/sched/sched_switch/trigger && echo 'hist:keys=common_cpu:idur=common_timestamp-$its:onmatch(sched.sched_switch).trace(kbp_idle,$idur) if prev_pid == 0' >> events/sched/sched_switch/trigger && echo 'hist:keys=common_cpu:vals=dur' > events/synthetic/kbp_idle/trigger && echo 'hist:keys=common_cpu:hts=common_timestamp if state < 100' > events/power/cpu_idle/trigger && for e in irq/irq_handler_entry irq_vectors/local_timer_entry irq_vectors/irq_work_entry irq_vectors/reschedule_entry irq_vectors/call_function_entry irq_vectors/call_function_single_entry irq_vectors/spurious_apic_entry irq_vectors/error_apic_entry irq_vectors/x86_platform_ipi_entry; do echo 'hist:keys=common_cpu:hd=common_timestamp-$hts:onmatch(power.cpu_idle).trace(kbp_halt,$hd)' >> events/$e/trigger || echo FAIL $e; done; echo 'hist:keys=common_cpu:hd2=common_timestamp-$hts:onmatch(power.cpu_idle).trace(kbp_halt,$hd2) if state > 100' >> events/power/cpu_idle/trigger || echo FAIL self; echo 'hist:keys=common_cpu:vals=dur' > events/synthetic/kbp_halt/trigger; cat error_log; cat events/power/cpu_idle/trigger; echo armed
EOF
)
MEASURE=$(cat <<'EOF'
snap() { awk '/^now at/{n=$3} END{printf "%s ", n}' /proc/timer_list; for e in kbp_halt kbp_idle; do awk '{for(i=1;i<NF;i++) if($i=="dur:") s+=$(i+1)} END{printf "%.0f ", s+0}' /sys/kernel/tracing/events/synthetic/$e/hist; done; echo; }; ks() { if [ -e /sys/kernel/debug/kbp/stats ]; then awk '$1=="thread"{printf "rounds %s polls %s empty %s parks %s ", $4, $6, $7, $11} $1=="napi" && $4 != -1 {printf "[%s %s p%s e%s] ", $3, $4, $7, $8}' /sys/kernel/debug/kbp/stats; fi; }; m() { k0=$(ks); set -- $(snap); t0=$1; h0=$2; i0=$3; eval "$CMD" > /tmp/out 2>&1; set -- $(snap); k1=$(ks); echo "$LABEL: clock $(( $1-t0 )) halt $(( $2-h0 )) sched_idle $(( $3-i0 )) busy_halt $(( $1-t0-$2+h0 )) busy_sched $(( $1-t0-$3+i0 )) ; $(tail -1 /tmp/out)"; echo "   stats before: $k0"; echo "   stats after:  $k1"; }
EOF
)
run() { echo "$MEASURE; LABEL='$1'; CMD='$2'; m"; }
P='ping -q -c 500 -i 0.01 10.77.0.1'
exec cargo xtask guest-run --icount "$ARM" \
  "$(run 'baseline 0' 'true')" \
  "$(run 'baseline 0' 'true')" \
  "$(run 'baseline sleep 2' 'sleep 2')" \
  "$(run 'baseline sleep 2' 'sleep 2')" \
  "$(run 'baseline sleep 5' 'sleep 5')" \
  "$(run 'napi ping 500' "$P")" \
  "$(run 'napi ping 500' "$P")" \
  "$(run 'napi ping 500' "$P")" \
  "insmod /lib/modules/kbp.ko ifaces=eth0 cpus=0 mode=spin && sleep 1 && echo ok" \
  "$(run 'spin 0' 'true')" \
  "$(run 'spin 0' 'true')" \
  "$(run 'spin sleep 2' 'sleep 2')" \
  "$(run 'spin sleep 5' 'sleep 5')" \
  "$(run 'spin ping 500' "$P")" \
  "$(run 'spin ping 500' "$P")" \
  "rmmod kbp && insmod /lib/modules/kbp.ko ifaces=eth0 cpus=0 mode=adaptive && sleep 1 && echo ok" \
  "$(run 'adaptive sleep 2' 'sleep 2')" \
  "$(run 'adaptive ping 500' "$P")" \
  "$(run 'adaptive ping 500' "$P")" \
  "rmmod kbp && insmod /lib/modules/kbp.ko ifaces=eth0 cpus=0 mode=adaptive spin_window_us=2000 && sleep 1 && echo ok" \
  "$(run 'adaptive2000 sleep 2' 'sleep 2')" \
  "$(run 'adaptive2000 ping 500' "$P")" \
  "$(run 'adaptive2000 ping 500' "$P")"
