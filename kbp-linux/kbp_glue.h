/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C side of kbp.ko: wrappers for what Rust cannot reach (static inline helpers,
 * macros, napi_struct fields, string module parameters). No policy lives here; every
 * decision is made in kbp_main.rs / kbp-core. Declared again in kbp_main.rs.
 */
#ifndef KBP_GLUE_H
#define KBP_GLUE_H

#include <linux/types.h>

struct napi_struct;
struct net_device;
struct task_struct;

/* Module parameters. */
const char *kbp_param_ifaces(void);
const char *kbp_param_mode(void);
const char *kbp_param_cpus(void);
unsigned int kbp_param_weight(void);
unsigned int kbp_param_budget(void);
unsigned int kbp_param_time_limit_us(void);
unsigned int kbp_param_spin_window_us(void);
unsigned int kbp_param_idle_release_us(void);
bool kbp_param_fifo(void);

/* Devices and their NAPI instances. */
struct net_device *kbp_dev_get(const char *name, size_t len, int pid, int *err);
void kbp_dev_put(struct net_device *dev);
void kbp_rtnl_lock(void);
void kbp_rtnl_unlock(void);
void kbp_dev_lock(struct net_device *dev);
void kbp_dev_unlock(struct net_device *dev);
int kbp_dev_napis(struct net_device *dev, struct napi_struct **out, int max);
bool kbp_napi_serves_rx(struct net_device *dev, const struct napi_struct *n);
int kbp_napi_id(const struct napi_struct *n);
struct net_device *kbp_napi_dev(const struct napi_struct *n);

/* The protocol's operations on napi->state (kbp-core's `Napi` trait). */
u32 kbp_napi_bits(const struct napi_struct *n);
u32 kbp_napi_weight(const struct napi_struct *n);
void kbp_napi_set_in_busy_poll(struct napi_struct *n);
void kbp_napi_clear_in_busy_poll(struct napi_struct *n);
int kbp_napi_poll(struct napi_struct *n, int budget);
int kbp_napi_hand_back_poll(struct napi_struct *n, int budget);
void kbp_napi_complete(struct napi_struct *n);
void kbp_napi_schedule(struct napi_struct *n);

/* The entry hooks (ftrace); the callbacks are implemented in Rust. */
int kbp_delete_hook_register(void);
int kbp_schedule_hook_register(void);
void kbp_schedule_hook_unregister(void);
void kbp_delete_hook_unregister(void);
bool kbp_rust_on_schedule(struct napi_struct *n);
void kbp_rust_on_delete(struct napi_struct *n);

/* Execution environment. */
void kbp_bh_disable(void);
void kbp_bh_enable(void);
u64 kbp_now_ns(void);
void kbp_quiescent(void);
void kbp_prepare_to_sleep(void);
void kbp_sleep(void);
void kbp_sleep_for(u64 ns);
void kbp_set_running(void);
void kbp_wake(struct task_struct *t);
struct task_struct *kbp_thread_create(int (*fn)(void *), void *data, int cpu);
bool kbp_should_stop(void);
int kbp_thread_stop_put(struct task_struct *t);
void kbp_set_fifo(struct task_struct *t);
bool kbp_cpu_usable(int cpu);
int kbp_thread_pin(struct task_struct *t, int cpu);

/* Notifier (NETDEV_UNREGISTER) and debugfs; the callbacks are implemented in Rust. */
int kbp_notifier_register(void);
void kbp_notifier_unregister(void);
void kbp_rust_netdev_unregister(struct net_device *dev);
int kbp_debugfs_create(void);
void kbp_debugfs_remove(void);
size_t kbp_rust_stats_format(char *buf, size_t size);

/* CPU hotplug; the callback is implemented in Rust. */
int kbp_cpuhp_register(void);
void kbp_cpuhp_unregister(void);
void kbp_rust_cpu_online(unsigned int cpu);

#endif
