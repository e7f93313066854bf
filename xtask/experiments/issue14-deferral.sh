#!/bin/bash
# Run from anywhere: cargo xtask guest-run in this checkout (takes the machine-wide guest lock).
# Experiment for issue 14: NET_RX raise->run and ksoftirqd/0 wake->run under loads.
set -e
cd "$(dirname "$0")/../.."
ARM=$(cat <<'EOF'
for i in $(grep virtio0- /proc/interrupts | cut -d: -f1); do echo 0 > /proc/irq/$i/smp_affinity_list; done; cd /sys/kernel/tracing && echo mono > trace_clock && echo 'kbp_lat u64 lat' >> synthetic_events && echo 'kbp_ksd u64 lat' >> synthetic_events && echo 'hist:keys=common_cpu:ts0=common_timestamp.usecs if vec == 3' > events/irq/softirq_raise/trigger && echo 'hist:keys=common_cpu:lat=common_timestamp.usecs-$ts0:onmatch(irq.softirq_raise).trace(kbp_lat,$lat) if vec == 3' > events/irq/softirq_entry/trigger && echo 'hist:keys=pid:ts1=common_timestamp.usecs if comm == "ksoftirqd/0"' > events/sched/sched_waking/trigger && echo 'hist:keys=next_pid:lat=common_timestamp.usecs-$ts1:onmatch(sched.sched_waking).trace(kbp_ksd,$lat) if next_comm == "ksoftirqd/0"' > events/sched/sched_switch/trigger && echo 'hist:keys=lat:sort=lat:size=4096' > events/synthetic/kbp_lat/trigger && echo 'hist:keys=lat:sort=lat:size=4096' > events/synthetic/kbp_ksd/trigger && echo armed; uname -r; cat /proc/sys/kernel/sched_rt_runtime_us; cat /proc/cmdline
EOF
)
PHASE=$(cat <<'EOF'
T=/sys/kernel/tracing/events/synthetic; for e in kbp_lat kbp_ksd; do echo 'hist:keys=lat:sort=lat:size=4096:clear' >> $T/$e/trigger; done; for c in /proc/[0-9]*/comm; do read n < $c; [ "$n" = ksoftirqd/0 ] && K=${c%/comm}; done; read r0 w0 s0 < $K/schedstat; q0=$(awk 'NR==1{print $3}' /proc/net/softnet_stat); n0=$(awk '/NET_RX/{print $2}' /proc/softirqs); ping -q -i 0.002 -c 1500 -W 2 10.77.0.1 | tail -2; read r1 w1 s1 < $K/schedstat; q1=$(awk 'NR==1{print $3}' /proc/net/softnet_stat); n1=$(awk '/NET_RX/{print $2}' /proc/softirqs); echo "ksoftirqd/0: ran $(( (r1-r0)/1000000 )) ms, waited $(( (w1-w0)/1000000 )) ms, $((s1-s0)) timeslices; CPU0 NET_RX +$((n1-n0)); time_squeeze 0x$q0 -> 0x$q1"; for e in kbp_lat kbp_ksd; do awk -v name=$e 'BEGIN { n = 0 } $1 == "{" && $2 == "lat:" { if ($3 < 1099511627776) { L[n]=$3; C[n]=$6; n++; t+=$6 } } END { if (!t) { print name": 0 events"; exit } split("50 99 99.9",P," "); s=name": "t" events"; for (i=1;i<=3;i++) { r=P[i]*t/100; if (r>int(r)) r=int(r)+1; if (r<1) r=1; cum=0; for (j=0;j<n;j++) { cum+=C[j]; if (cum>=r) { s=s" p"P[i]" "L[j]; break } } } print s" max "L[n-1]" us" }' $T/$e/hist; done; echo "load: $(cat /proc/loadavg)"; true
EOF
)
STOP='kill $(pidof kbp-ctl) 2>/dev/null; sleep 0.5; echo 0 > /sys/class/net/lo/queues/rx-0/rps_cpus; pidof kbp-ctl; true'
exec cargo xtask guest-run "$ARM" \
  "echo PHASE A idle" "$PHASE" \
  "echo PHASE B flood on CPU 0; (kbp-ctl flood 0 >/dev/null 2>&1 &); sleep 1" "$PHASE" "$STOP" \
  "echo PHASE C RPS flood CPU1 to CPU0; echo 1 > /sys/class/net/lo/queues/rx-0/rps_cpus; (kbp-ctl flood 1 1 >/dev/null 2>&1 &); sleep 1" "$PHASE" \
  "echo PHASE D C plus 2 spinners nice 0 on CPU0; (kbp-ctl spin 0 2 0 >/dev/null 2>&1 &); sleep 1" "$PHASE" "$STOP" \
  "echo PHASE E RPS flood plus 2 spinners nice -10 on CPU0; echo 1 > /sys/class/net/lo/queues/rx-0/rps_cpus; (kbp-ctl flood 1 1 >/dev/null 2>&1 &); (kbp-ctl spin 0 2 -10 >/dev/null 2>&1 &); sleep 1" "$PHASE" "$STOP"
