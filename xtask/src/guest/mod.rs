//! Layer 2, a running guest and what the host reads from it: [`vm`] (the network
//! namespace and multi-queue tap, QEMU, the agent client `Guest::exec`/`check`, the
//! serial log's kernel warnings), [`probes`] (NET_RX softirq counts, the CPU sampler),
//! [`tracing`] (the in-guest delay from hist triggers), [`host_wait`] (how long QEMU's
//! threads waited for a host CPU), [`host_cpus`] (QEMU's threads on the host's cores:
//! the oversubscription line and the pinning), [`stats_file`] (the parser of kbp.ko's debugfs
//! counters), [`tcp`] (TCP request/response and bulk against the guest's `kbp-tcp`,
//! with both sides' TCP counters) and [`container`] (the container configuration: a
//! namespace behind a veth pair, a bridge and NAT). Uses [`crate::base`] and
//! [`crate::build`] (the guest's addresses and ports).

pub mod container;
pub mod host_cpus;
pub mod host_wait;
pub mod probes;
pub mod stats_file;
pub mod tcp;
pub mod tracing;
pub mod vm;
