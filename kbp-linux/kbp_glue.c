// SPDX-License-Identifier: GPL-2.0
/*
 * Thin C glue for kbp.ko; see kbp_glue.h. Every function here is a wrapper around a
 * static inline, a macro or a field access; the logic is in Rust.
 */
#include <linux/module.h>
#include <linux/ftrace.h>
#include <linux/trace_recursion.h>
#include <linux/moduleparam.h>
#include <linux/netdevice.h>
#include <linux/netpoll.h>
#include <linux/filter.h>
#include <linux/kthread.h>
#include <linux/sched.h>
#include <linux/debugfs.h>
#include <linux/seq_file.h>
#include <linux/rtnetlink.h>
#include <linux/cpumask.h>
#include <linux/cpuhotplug.h>
#include <linux/vmalloc.h>
#include <net/gro.h>
#include <net/netdev_lock.h>
#include <net/netdev_rx_queue.h>
#include <trace/events/napi.h>
#include <net/net_namespace.h>

#include "kbp_glue.h"

/*
 * Module parameters. Rust's module! macro takes only integers in 7.2, so the strings
 * live here; all of them are validated in Rust (kbp_main.rs, Params::read).
 */
static char kbp_ifaces[128] = "";
module_param_string(ifaces, kbp_ifaces, sizeof(kbp_ifaces), 0444);
MODULE_PARM_DESC(ifaces, "Comma-separated interfaces whose every NAPI instance KBP serves (required)");
static char kbp_mode[16] = "spin";
module_param_string(mode, kbp_mode, sizeof(kbp_mode), 0444);
MODULE_PARM_DESC(mode, "Idle mode: spin (never sleep) or adaptive (spin for spin_window_us, then park)");
static char kbp_cpus[64] = "";
module_param_string(cpus, kbp_cpus, sizeof(kbp_cpus), 0444);
MODULE_PARM_DESC(cpus, "CPUs to run one KBP thread each on, e.g. 2,3 or 1-3 (default: the last online CPU)");
static unsigned int kbp_weight = 64;
module_param_named(weight, kbp_weight, uint, 0444);
MODULE_PARM_DESC(weight, "Packets per poll of one NAPI instance, 1..4096 (default 64)");
static unsigned int kbp_budget = 300;
module_param_named(budget, kbp_budget, uint, 0444);
MODULE_PARM_DESC(budget, "Packets per drain round, 1..1048576 (default 300)");
static unsigned int kbp_time_limit_us = 2000;
module_param_named(time_limit_us, kbp_time_limit_us, uint, 0444);
MODULE_PARM_DESC(time_limit_us, "Longest drain round in microseconds, 1..1000000 (default 2000)");
static unsigned int kbp_spin_window_us = 1000;
module_param_named(spin_window_us, kbp_spin_window_us, uint, 0444);
MODULE_PARM_DESC(spin_window_us, "Adaptive mode: keep polling this long after the last packet, 0..10000000 (default 1000)");
static unsigned int kbp_idle_release_us = 2000;
module_param_named(idle_release_us, kbp_idle_release_us, uint, 0444);
MODULE_PARM_DESC(idle_release_us, "Release an instance whose polls found no packet for this long, even in spin mode (napi_synchronize waits for it), 1..1000000 (default 2000)");
static bool kbp_fifo;
module_param_named(fifo, kbp_fifo, bool, 0444);
MODULE_PARM_DESC(fifo, "Run the KBP thread SCHED_FIFO (default off)");

const char *kbp_param_ifaces(void) { return kbp_ifaces; }
const char *kbp_param_mode(void) { return kbp_mode; }
const char *kbp_param_cpus(void) { return kbp_cpus; }
unsigned int kbp_param_weight(void) { return kbp_weight; }
unsigned int kbp_param_budget(void) { return kbp_budget; }
unsigned int kbp_param_time_limit_us(void) { return kbp_time_limit_us; }
unsigned int kbp_param_spin_window_us(void) { return kbp_spin_window_us; }
unsigned int kbp_param_idle_release_us(void) { return kbp_idle_release_us; }
bool kbp_param_fifo(void) { return kbp_fifo; }

/*
 * The device named `name` in the network namespace of process `pid` (0: init_net), with
 * a reference (dev_hold) the caller puts with kbp_dev_put(). The namespace is referenced
 * only for the lookup: get_net_ns_by_pid() takes a reference (net_namespace.c:789-808,
 * -ESRCH for no such process or one exiting), dev_get_by_name() references the device,
 * put_net() drops the namespace. A device does not keep its namespace alive; when the
 * namespace goes, cleanup_net() unregisters the device or moves it to init_net
 * (default_device_exit_batch, dev.c:13197-13210; default_device_exit_net, :13159-13176),
 * and both send NETDEV_UNREGISTER, at which kbp puts the device's reference.
 * Returns NULL with *err -ESRCH (no such process) or -ENODEV (no such device there).
 */
struct net_device *kbp_dev_get(const char *name, size_t len, int pid, int *err)
{
	char buf[IFNAMSIZ];
	struct net_device *dev;
	struct net *net = &init_net;

	/*
	 * The caller holds RTNL from the lookup until it has recorded the device, with its
	 * netdevice notifier already registered: the device cannot unregister or move to
	 * another namespace in between (both happen under RTNL), so its NETDEV_UNREGISTER
	 * always reaches kbp after kbp holds the reference.
	 */
	ASSERT_RTNL();
	*err = -ENODEV;
	if (len == 0 || len >= IFNAMSIZ)
		return NULL;
	memcpy(buf, name, len);
	buf[len] = '\0';
	if (pid > 0) {
		net = get_net_ns_by_pid(pid);
		if (IS_ERR(net)) {
			*err = PTR_ERR(net);
			return NULL;
		}
	}
	dev = dev_get_by_name(net, buf);
	if (pid > 0)
		put_net(net);
	return dev;
}

void kbp_dev_put(struct net_device *dev) { dev_put(dev); }
void kbp_rtnl_lock(void) { rtnl_lock(); }
void kbp_rtnl_unlock(void) { rtnl_unlock(); }

/*
 * The device's NAPI instances; the caller holds its instance lock (kbp_dev_lock), which
 * netif_napi_add_weight_locked() and __netif_napi_del_locked() hold to change the list,
 * until it has recorded them, with the delete hook already registered: an instance
 * deleted later is seen by kbp_rust_on_delete().
 */
int kbp_dev_napis(struct net_device *dev, struct napi_struct **out, int max)
{
	struct napi_struct *n;
	int count = 0;

	netdev_assert_locked(dev);
	list_for_each_entry(n, &dev->napi_list, dev_list) {
		if (count < max)
			out[count] = n;
		count++;
	}
	return count;
}

/*
 * Whether `n` is the NAPI of one of the device's RX queues, as the driver declared it
 * with netif_queue_set_napi() (net/core/dev.c): virtio-net, igb and e1000e do. The
 * caller holds RTNL and the instance lock (the load's Kbp::take_devices), under which
 * these drivers write real_num_rx_queues and rxq->napi; READ_ONCE all the same, since
 * the answer only chooses a thread: _rx has num_rx_queues >= real_num_rx_queues
 * entries from allocation to free_netdev(), the module holds a device reference, and
 * the pointer is only compared, never followed.
 */
bool kbp_napi_serves_rx(struct net_device *dev, const struct napi_struct *n)
{
	unsigned int i, rx = READ_ONCE(dev->real_num_rx_queues);

	netdev_assert_locked(dev);
	for (i = 0; i < rx; i++)
		if (READ_ONCE(__netif_get_rx_queue(dev, i)->napi) == n)
			return true;
	return false;
}

/* The device's instance lock, held while KBP reads and records its instances. */
void kbp_dev_lock(struct net_device *dev) { netdev_lock(dev); }
void kbp_dev_unlock(struct net_device *dev) { netdev_unlock(dev); }

int kbp_napi_id(const struct napi_struct *n) { return READ_ONCE(n->napi_id); }
struct net_device *kbp_napi_dev(const struct napi_struct *n) { return n->dev; }

/*
 * napi->state as kbp-core's NapiBits (kbp-core/src/napi.rs): SCHED 0, MISSED 1,
 * DISABLE 2, NPSVC 3, IN_BUSY_POLL 4, THREADED 5, NO_BUSY_POLL 6.
 * THREADED_BUSY_POLL implies THREADED.
 */
u32 kbp_napi_bits(const struct napi_struct *n)
{
	unsigned long s = READ_ONCE(n->state);

	return !!(s & NAPIF_STATE_SCHED) << 0 |
	       !!(s & NAPIF_STATE_MISSED) << 1 |
	       !!(s & NAPIF_STATE_DISABLE) << 2 |
	       !!(s & NAPIF_STATE_NPSVC) << 3 |
	       !!(s & NAPIF_STATE_IN_BUSY_POLL) << 4 |
	       !!(s & (NAPIF_STATE_THREADED | NAPIF_STATE_THREADED_BUSY_POLL)) << 5 |
	       !!(s & NAPIF_STATE_NO_BUSY_POLL) << 6;
}

u32 kbp_napi_weight(const struct napi_struct *n) { return READ_ONCE(n->weight); }

/* Only the holder of SCHED calls these (napi_busy_loop()'s rule for IN_BUSY_POLL). */
void kbp_napi_set_in_busy_poll(struct napi_struct *n)
{
	set_bit(NAPI_STATE_IN_BUSY_POLL, &n->state);
}

/* busy_poll_stop()'s first step: the caller polls once more, so MISSED may go. */
void kbp_napi_clear_in_busy_poll(struct napi_struct *n)
{
	clear_bit(NAPI_STATE_MISSED, &n->state);
	clear_bit(NAPI_STATE_IN_BUSY_POLL, &n->state);
}

/* Deliver the GRO_NORMAL batch (gro_normal_list() uses a non-exported helper). */
static void kbp_gro_normal_list(struct gro_node *gro)
{
	if (!gro->rx_count)
		return;
	netif_receive_skb_list(&gro->rx_list);
	INIT_LIST_HEAD(&gro->rx_list);
	gro->rx_count = 0;
}

/*
 * One poll of an owned instance; the caller has BH disabled (which is also the RCU
 * read-side section that keeps the instance's memory alive: a driver frees a deleted
 * instance only after synchronize_net()). Around n->poll() it does what __napi_poll()
 * and napi_complete_done() do: with the whole budget used, flush GRO packets older
 * than a jiffy (more work follows at once); with less, flush every held GRO packet,
 * as napi_complete_done() would (under IN_BUSY_POLL it returns before its own flush),
 * so no segment waits for the next poll. Then the GRO_NORMAL batch.
 */
int kbp_napi_poll(struct napi_struct *n, int budget)
{
	struct bpf_net_context __bpf_net_ctx, *bpf_net_ctx;
	void *have;
	int work;

	bpf_net_ctx = bpf_net_ctx_set(&__bpf_net_ctx);
	have = netpoll_poll_lock(n);
	work = n->poll(n, budget);
	/* As __napi_poll() does: perf, bpftrace and the NAPI tools see KBP's polls. */
	trace_napi_poll(n, work, budget);
	gro_flush(&n->gro, work >= budget && HZ >= 1000);
	kbp_gro_normal_list(&n->gro);
	netpoll_poll_unlock(have);
	bpf_net_ctx_clear(bpf_net_ctx);
	return work;
}

/*
 * The hand-back poll, as busy_poll_stop() does it: IN_BUSY_POLL is clear, so unless the
 * driver used the whole budget it completed the instance (napi_complete_done() flushed
 * GRO and cleared SCHED) and another poller may own it already: touch nothing of it
 * after n->poll() but the tracepoint (as busy_poll_stop()) and our netpoll lock. With
 * the budget used it is still ours: deliver the GRO_NORMAL batch. BH disabled by the
 * caller.
 */
int kbp_napi_hand_back_poll(struct napi_struct *n, int budget)
{
	struct bpf_net_context __bpf_net_ctx, *bpf_net_ctx;
	void *have;
	int work;

	bpf_net_ctx = bpf_net_ctx_set(&__bpf_net_ctx);
	have = netpoll_poll_lock(n);
	work = n->poll(n, budget);
	trace_napi_poll(n, work, budget);
	netpoll_poll_unlock(have);
	if (work >= budget)
		kbp_gro_normal_list(&n->gro);
	bpf_net_ctx_clear(bpf_net_ctx);
	return work;
}

/* Let go after a poll that used its whole budget, for a pending napi_disable(). */
void kbp_napi_complete(struct napi_struct *n) { napi_complete(n); }

/* Hand SCHED on (reaches kbp's own schedule hook while the instance is served). */
void kbp_napi_schedule(struct napi_struct *n) { __napi_schedule(n); }

/*
 * The entry hooks. KBP takes the instances it serves where the kernel hands a
 * scheduled instance to its poller: the exported, out-of-line __napi_schedule() and
 * __napi_schedule_irqoff(), whose caller holds NAPI_STATE_SCHED. An ftrace_ops with
 * IPMODIFY (the mechanism livepatch is built on) runs kbp_rust_on_schedule() at their
 * entry; when KBP takes the instance the function's body is skipped (the saved
 * instruction pointer goes to an empty function with the same signature), so the
 * instance is not listed on the softirq's poll list and NET_RX_SOFTIRQ is not raised.
 * Every other instance runs the kernel's code untouched. A second ftrace_ops observes
 * __netif_napi_del_locked() (instance lock held; the instance disabled or never
 * enabled, which the kernel WARNs about otherwise) so that KBP forgets an instance
 * before its driver may free it.
 */
#ifdef CONFIG_DYNAMIC_FTRACE_WITH_ARGS
static void kbp_schedule_diverted(struct napi_struct *n)
{
}

static void notrace kbp_schedule_entry(unsigned long ip, unsigned long parent_ip,
				       struct ftrace_ops *op, struct ftrace_regs *fregs)
{
	struct napi_struct *n = (struct napi_struct *)ftrace_regs_get_argument(fregs, 0);
	/* As livepatch's handler: also disables preemption for the callback's duration. */
	int bit = ftrace_test_recursion_trylock(ip, parent_ip);

	if (bit < 0)
		return;
	if (kbp_rust_on_schedule(n))
		ftrace_regs_set_instruction_pointer(fregs, (unsigned long)kbp_schedule_diverted);
	ftrace_test_recursion_unlock(bit);
}

static void notrace kbp_delete_entry(unsigned long ip, unsigned long parent_ip,
				     struct ftrace_ops *op, struct ftrace_regs *fregs)
{
	int bit = ftrace_test_recursion_trylock(ip, parent_ip);

	if (bit < 0)
		return;
	kbp_rust_on_delete((struct napi_struct *)ftrace_regs_get_argument(fregs, 0));
	ftrace_test_recursion_unlock(bit);
}

/* PERMANENT: `sysctl kernel.ftrace_enabled=0` must not silently switch ownership off. */
static struct ftrace_ops kbp_schedule_ops = {
	.func = kbp_schedule_entry,
	.flags = FTRACE_OPS_FL_IPMODIFY | FTRACE_OPS_FL_PERMANENT,
};

static struct ftrace_ops kbp_delete_ops = {
	.func = kbp_delete_entry,
	.flags = FTRACE_OPS_FL_PERMANENT,
};

/*
 * Each returns 0 or ftrace's error (-EBUSY from the schedule hook: another IPMODIFY
 * user, such as a livepatch, already owns one of the functions).
 */
int kbp_delete_hook_register(void)
{
	int rc = ftrace_set_filter_ip(&kbp_delete_ops, (unsigned long)__netif_napi_del_locked, 0, 0);

	if (!rc)
		rc = register_ftrace_function(&kbp_delete_ops);
	if (rc)
		ftrace_free_filter(&kbp_delete_ops);
	return rc;
}

int kbp_schedule_hook_register(void)
{
	int rc = ftrace_set_filter_ip(&kbp_schedule_ops, (unsigned long)__napi_schedule, 0, 0);

	if (!rc)
		rc = ftrace_set_filter_ip(&kbp_schedule_ops, (unsigned long)__napi_schedule_irqoff, 0, 0);
	if (!rc)
		rc = register_ftrace_function(&kbp_schedule_ops);
	if (rc)
		ftrace_free_filter(&kbp_schedule_ops);
	return rc;
}

/*
 * After it returns no CPU is inside kbp_schedule_entry() (ftrace_shutdown() waits for
 * every CPU to leave a dynamic ops' callbacks), and every later __napi_schedule() of
 * every instance runs the kernel's code.
 */
void kbp_schedule_hook_unregister(void)
{
	unregister_ftrace_function(&kbp_schedule_ops);
	ftrace_free_filter(&kbp_schedule_ops);
}

void kbp_delete_hook_unregister(void)
{
	unregister_ftrace_function(&kbp_delete_ops);
	ftrace_free_filter(&kbp_delete_ops);
}
#else
/* No ftrace with arguments in this kernel: kbp refuses to load (kbp_main.rs says why). */
int kbp_delete_hook_register(void) { return -EOPNOTSUPP; }
int kbp_schedule_hook_register(void) { return -EOPNOTSUPP; }
void kbp_schedule_hook_unregister(void) { }
void kbp_delete_hook_unregister(void) { }
#endif

void kbp_bh_disable(void) { local_bh_disable(); }
void kbp_bh_enable(void) { local_bh_enable(); }
/*
 * The KBP thread's clock: local_clock() (sched_clock, per CPU, no clocksource read and no
 * seqcount retry). The thread is pinned, and kbp-core tolerates a clock that steps back
 * when the thread is moved (CPU hotplug): it only ever saturates differences.
 */
u64 kbp_now_ns(void) { return local_clock(); }
/*
 * Between two steps of the poller: an RCU-Tasks quiescent state, a voluntary reschedule
 * point, and cpu_relax() (PAUSE), as __napi_busy_loop() does in its loop: it yields the
 * pipeline to an SMT sibling, and an emulator (QEMU's TCG) to the other vCPUs.
 */
void kbp_quiescent(void)
{
	cond_resched_tasks_rcu_qs();
	cpu_relax();
}
void kbp_prepare_to_sleep(void) { set_current_state(TASK_INTERRUPTIBLE); }
void kbp_sleep(void) { schedule(); }
/*
 * An hrtimer, not jiffies: a park deadline is in nanoseconds, and schedule_timeout would
 * round it to a tick (1-4 ms) or, for a short one, fire before it (sleep_timeout.c:93).
 */
void kbp_sleep_for(u64 ns)
{
	ktime_t t = ns_to_ktime(min_t(u64, ns, KTIME_MAX));

	schedule_hrtimeout_range(&t, 10 * NSEC_PER_USEC, HRTIMER_MODE_REL);
}
void kbp_set_running(void) { __set_current_state(TASK_RUNNING); }
void kbp_wake(struct task_struct *t) { wake_up_process(t); }

/* A pinned kthread, with a task reference the module holds until kbp_thread_stop_put(). */
struct task_struct *kbp_thread_create(int (*fn)(void *), void *data, int cpu)
{
	struct task_struct *t = kthread_create_on_cpu(fn, data, cpu, "kbp/%u");

	if (IS_ERR(t))
		return NULL;
	get_task_struct(t);
	return t;
}

bool kbp_should_stop(void) { return kthread_should_stop(); }
int kbp_thread_stop_put(struct task_struct *t) { return kthread_stop_put(t); }
void kbp_set_fifo(struct task_struct *t) { sched_set_fifo_low(t); }
bool kbp_cpu_usable(int cpu) { return cpu >= 0 && cpu < nr_cpu_ids && cpu_online(cpu); }

int kbp_thread_pin(struct task_struct *t, int cpu) { return set_cpus_allowed_ptr(t, cpumask_of(cpu)); }

/* CPU hotplug: when a CPU comes back online, its KBP thread is pinned there again. */
static enum cpuhp_state kbp_cpuhp_state;

static int kbp_cpu_online(unsigned int cpu)
{
	kbp_rust_cpu_online(cpu);
	return 0;
}

int kbp_cpuhp_register(void)
{
	int rc = cpuhp_setup_state_nocalls(CPUHP_AP_ONLINE_DYN, "net/kbp:online", kbp_cpu_online, NULL);

	if (rc < 0)
		return rc;
	kbp_cpuhp_state = rc;
	return 0;
}

void kbp_cpuhp_unregister(void) { cpuhp_remove_state_nocalls(kbp_cpuhp_state); }

/*
 * A device unregisters or leaves its namespace (RTNL held): KBP forgets it and puts its
 * reference at once. Only NETDEV_UNREGISTER is passed on: the NETDEV_REGISTER and
 * NETDEV_UP that register_netdevice_notifier() replays for every existing device
 * (dev.c:1916-1930) mean nothing to kbp, and neither does a device's NETDEV_REGISTER in
 * the namespace it moved to. A NETDEV_UNREGISTER of a device kbp already gave up (the
 * rebroadcasts of netdev_wait_allrefs_any(), dev.c:11709-11714, the replay of
 * unregister_netdevice_notifier()) finds nothing to do.
 */
static int kbp_netdev_event(struct notifier_block *nb, unsigned long event, void *ptr)
{
	if (event == NETDEV_UNREGISTER)
		kbp_rust_netdev_unregister(netdev_notifier_info_to_dev(ptr));
	return NOTIFY_DONE;
}

static struct notifier_block kbp_nb = { .notifier_call = kbp_netdev_event };

int kbp_notifier_register(void) { return register_netdevice_notifier(&kbp_nb); }
void kbp_notifier_unregister(void) { unregister_netdevice_notifier(&kbp_nb); }

static struct dentry *kbp_dir;

static int kbp_stats_show(struct seq_file *m, void *v)
{
	size_t size = 16384, len;
	char *buf = kvmalloc(size, GFP_KERNEL);

	if (!buf)
		return -ENOMEM;
	len = kbp_rust_stats_format(buf, size);
	seq_write(m, buf, len);
	kvfree(buf);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(kbp_stats);

int kbp_debugfs_create(void)
{
	kbp_dir = debugfs_create_dir("kbp", NULL);
	if (IS_ERR(kbp_dir))
		return PTR_ERR(kbp_dir);
	debugfs_create_file("stats", 0444, kbp_dir, NULL, &kbp_stats_fops);
	return 0;
}

void kbp_debugfs_remove(void) { debugfs_remove_recursive(kbp_dir); }
