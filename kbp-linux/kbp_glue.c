// SPDX-License-Identifier: GPL-2.0
/*
 * Thin C glue for kbp.ko; see kbp_glue.h. Every function here is a wrapper around a
 * static inline, a macro or a field access; the logic is in Rust.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/netdevice.h>
#include <linux/netpoll.h>
#include <linux/filter.h>
#include <linux/kthread.h>
#include <linux/sched.h>
#include <linux/delay.h>
#include <linux/debugfs.h>
#include <linux/seq_file.h>
#include <linux/rtnetlink.h>
#include <linux/cpumask.h>
#include <linux/cpuhotplug.h>
#include <linux/vmalloc.h>
#include <net/gro.h>
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
bool kbp_param_fifo(void) { return kbp_fifo; }

struct net_device *kbp_dev_get(const char *name, size_t len)
{
	char buf[IFNAMSIZ];

	if (len == 0 || len >= IFNAMSIZ)
		return NULL;
	memcpy(buf, name, len);
	buf[len] = '\0';
	return dev_get_by_name(&init_net, buf);
}

void kbp_dev_put(struct net_device *dev) { dev_put(dev); }
const char *kbp_dev_name(const struct net_device *dev) { return dev->name; }

int kbp_dev_napis(struct net_device *dev, struct napi_struct **out, int max)
{
	struct napi_struct *n;
	int count = 0;

	rtnl_lock();
	list_for_each_entry(n, &dev->napi_list, dev_list) {
		if (count < max)
			out[count] = n;
		count++;
	}
	rtnl_unlock();
	return count;
}

int kbp_napi_id(const struct napi_struct *n) { return n->napi_id; }

/*
 * The wake hook: with NAPI_STATE_THREADED set and napi->thread pointing at the KBP
 * thread, ____napi_schedule() wakes that thread (and sets SCHED_THREADED) instead of
 * listing the instance and raising NET_RX_SOFTIRQ.
 *
 * It is installed only while the device is up (NETDEV_UP .. NETDEV_GOING_DOWN): on
 * napi_enable() a NAPI with per-NAPI config re-applies its configured threaded mode,
 * and with threaded mode off and napi->thread set it would try to stop that thread.
 */
bool kbp_napi_can_hijack(const struct napi_struct *n)
{
	return !READ_ONCE(n->thread) && !n->dev->threaded;
}

void kbp_napi_hijack(struct napi_struct *n, struct task_struct *t)
{
	if (READ_ONCE(n->thread))
		return;
	WRITE_ONCE(n->thread, t);
	/* Paired with the READ_ONCE(napi->thread) in ____napi_schedule(). */
	smp_mb__before_atomic();
	set_bit(NAPI_STATE_THREADED, &n->state);
}

void kbp_napi_unhijack(struct napi_struct *n, struct task_struct *t)
{
	if (READ_ONCE(n->thread) != t)
		return;
	clear_bit(NAPI_STATE_THREADED, &n->state);
	/* An IRQ that still saw THREADED finds no thread and uses the softirq. */
	WRITE_ONCE(n->thread, NULL);
}

bool kbp_napi_handed_over(const struct napi_struct *n)
{
	return test_bit(NAPI_STATE_SCHED_THREADED, &n->state);
}

bool kbp_napi_disable_pending(const struct napi_struct *n)
{
	return test_bit(NAPI_STATE_DISABLE, &n->state);
}

/*
 * Take SCHED|IN_BUSY_POLL as napi_busy_loop() does, or accept an instance an IRQ
 * handed over (SCHED|SCHED_THREADED). While IN_BUSY_POLL is set the driver's
 * napi_complete_done() returns false: its IRQ stays masked and no softirq runs it.
 */
bool kbp_napi_try_own(struct napi_struct *n)
{
	unsigned long val = READ_ONCE(n->state), new;

	do {
		if (val & (NAPIF_STATE_NPSVC | NAPIF_STATE_IN_BUSY_POLL))
			return false;
		if (val & NAPIF_STATE_SCHED) {
			/* Handed to us: take it even while a disable is pending, or
			 * nobody would ever complete it and napi_disable() would wait
			 * forever (the threaded poll loop takes it the same way).
			 */
			if (!(val & NAPIF_STATE_SCHED_THREADED))
				return false;
			new = (val & ~NAPIF_STATE_SCHED_THREADED) | NAPIF_STATE_IN_BUSY_POLL;
		} else {
			if (val & NAPIF_STATE_DISABLE)
				return false;
			new = val | NAPIF_STATE_SCHED | NAPIF_STATE_IN_BUSY_POLL;
		}
	} while (!try_cmpxchg(&n->state, &val, new));
	return true;
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

/* One poll of an owned instance; the caller has BH disabled (kbp_bh_disable). */
int kbp_napi_poll(struct napi_struct *n, int budget)
{
	struct bpf_net_context __bpf_net_ctx, *bpf_net_ctx;
	void *have;
	int work;

	bpf_net_ctx = bpf_net_ctx_set(&__bpf_net_ctx);
	have = netpoll_poll_lock(n);
	work = n->poll(n, budget);
	/* Flush aged GRO packets and the normal batch, as __napi_poll() does. */
	gro_flush(&n->gro, HZ >= 1000);
	kbp_gro_normal_list(&n->gro);
	netpoll_poll_unlock(have);
	bpf_net_ctx_clear(bpf_net_ctx);
	return work;
}

/*
 * Hand an owned instance back (busy_poll_stop()): drop IN_BUSY_POLL and MISSED, poll
 * once more so the driver's napi_complete_done() clears SCHED and re-arms its IRQ;
 * if that poll used the whole budget the instance is still scheduled, so schedule it
 * again (with THREADED set that wakes the KBP thread, otherwise NET_RX_SOFTIRQ), or
 * complete it when a disable is pending.
 */
int kbp_napi_release(struct napi_struct *n, int budget)
{
	struct bpf_net_context __bpf_net_ctx, *bpf_net_ctx;
	void *have;
	int rc;

	clear_bit(NAPI_STATE_MISSED, &n->state);
	clear_bit(NAPI_STATE_IN_BUSY_POLL, &n->state);
	local_bh_disable();
	bpf_net_ctx = bpf_net_ctx_set(&__bpf_net_ctx);
	have = netpoll_poll_lock(n);
	rc = n->poll(n, budget);
	netpoll_poll_unlock(have);
	if (rc == budget) {
		kbp_gro_normal_list(&n->gro);
		/* A pending napi_disable() waits for SCHED: complete now, as
		 * __napi_poll() does, instead of scheduling it again.
		 */
		if (napi_disable_pending(n))
			napi_complete(n);
		else
			__napi_schedule(n);
	}
	bpf_net_ctx_clear(bpf_net_ctx);
	local_bh_enable();
	return rc;
}

void kbp_bh_disable(void) { local_bh_disable(); }
void kbp_bh_enable(void) { local_bh_enable(); }
/*
 * The KBP thread's clock: local_clock() (sched_clock, per CPU, no clocksource read and no
 * seqcount retry). The thread is pinned, and kbp-core tolerates a clock that steps back
 * when the thread is moved (CPU hotplug): it only ever saturates differences.
 */
u64 kbp_now_ns(void) { return local_clock(); }
/* An RCU-Tasks quiescent state and a voluntary reschedule point. */
void kbp_quiescent(void) { cond_resched_tasks_rcu_qs(); }
void kbp_prepare_to_sleep(void) { set_current_state(TASK_INTERRUPTIBLE); }
void kbp_sleep(void) { schedule(); }
void kbp_set_running(void) { __set_current_state(TASK_RUNNING); }
void kbp_wake(struct task_struct *t) { wake_up_process(t); }

struct task_struct *kbp_thread_create(int (*fn)(void *), void *data, int cpu)
{
	struct task_struct *t = kthread_create_on_cpu(fn, data, cpu, "kbp/%u");

	return IS_ERR(t) ? NULL : t;
}

bool kbp_should_stop(void) { return kthread_should_stop(); }
int kbp_thread_stop(struct task_struct *t) { return kthread_stop(t); }
void kbp_set_fifo(struct task_struct *t) { sched_set_fifo_low(t); }
bool kbp_cpu_usable(int cpu) { return cpu >= 0 && cpu < nr_cpu_ids && cpu_online(cpu); }
void kbp_synchronize_rcu(void) { synchronize_rcu(); }
void kbp_msleep(unsigned int ms) { msleep(ms); }

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

static int kbp_netdev_event(struct notifier_block *nb, unsigned long event, void *ptr)
{
	enum kbp_event ev;

	switch (event) {
	case NETDEV_UP:
		ev = KBP_EV_UP;
		break;
	case NETDEV_GOING_DOWN:
		ev = KBP_EV_GOING_DOWN;
		break;
	case NETDEV_UNREGISTER:
		ev = KBP_EV_UNREGISTER;
		break;
	default:
		return NOTIFY_DONE;
	}
	kbp_rust_netdev_event(ev, netdev_notifier_info_to_dev(ptr));
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
