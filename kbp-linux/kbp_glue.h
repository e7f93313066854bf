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
bool kbp_param_fifo(void);

/* Devices and their NAPI instances. */
struct net_device *kbp_dev_get(const char *name, size_t len);
void kbp_dev_put(struct net_device *dev);
const char *kbp_dev_name(const struct net_device *dev);
int kbp_dev_napis(struct net_device *dev, struct napi_struct **out, int max);
int kbp_napi_id(const struct napi_struct *n);

/* Ownership of a NAPI instance by the KBP thread. */
bool kbp_napi_can_hijack(const struct napi_struct *n);
void kbp_napi_hijack(struct napi_struct *n, struct task_struct *t);
void kbp_napi_unhijack(struct napi_struct *n, struct task_struct *t);
bool kbp_napi_handed_over(const struct napi_struct *n);
bool kbp_napi_disable_pending(const struct napi_struct *n);
bool kbp_napi_try_own(struct napi_struct *n);
int kbp_napi_poll(struct napi_struct *n, int budget);
int kbp_napi_release(struct napi_struct *n, int budget);

/* Execution environment. */
void kbp_bh_disable(void);
void kbp_bh_enable(void);
u64 kbp_now_ns(void);
void kbp_quiescent(void);
void kbp_prepare_to_sleep(void);
void kbp_sleep(void);
void kbp_set_running(void);
void kbp_wake(struct task_struct *t);
struct task_struct *kbp_thread_create(int (*fn)(void *), void *data, int cpu);
bool kbp_should_stop(void);
int kbp_thread_stop(struct task_struct *t);
void kbp_set_fifo(struct task_struct *t);
bool kbp_cpu_usable(int cpu);
int kbp_thread_pin(struct task_struct *t, int cpu);
void kbp_synchronize_rcu(void);
void kbp_msleep(unsigned int ms);

/* Notifier and debugfs; the callbacks are implemented in Rust. */
enum kbp_event { KBP_EV_UP = 1, KBP_EV_GOING_DOWN = 2, KBP_EV_UNREGISTER = 3 };
int kbp_notifier_register(void);
void kbp_notifier_unregister(void);
void kbp_rust_netdev_event(enum kbp_event event, struct net_device *dev);
int kbp_debugfs_create(void);
void kbp_debugfs_remove(void);
size_t kbp_rust_stats_format(char *buf, size_t size);

/* CPU hotplug; the callback is implemented in Rust. */
int kbp_cpuhp_register(void);
void kbp_cpuhp_unregister(void);
void kbp_rust_cpu_online(unsigned int cpu);

#endif
