//! Data parallel over [burn-collective](https://crates.io/crates/burn-collective): the
//! replicas of a run (threads of one process, one per device) and, optionally, several
//! processes ("nodes", one per machine) sum their gradients with burn-collective's
//! all-reduce — a tree inside a process, a ring between nodes, the nodes meeting through its
//! global orchestrator (`resa collective-orchestrator --port P`).
//!
//! Each step, every replica concatenates its adapter gradients and its loss sum into one
//! f32 vector, so a step is one all-reduce however many adapter matrices there are (392 at
//! 1.5B with seven modules in 28 layers). Every node then applies the same AdamW update to
//! the same sums, so the nodes' adapters stay equal without sending weights.

use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use burn::collective::{
    AllReduceStrategy, CollectiveConfig, PeerId, ReduceOperation, all_reduce, finish_collective, register,
    reset_collective,
};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The processes of a multi-node run, as this one sees them ([`crate::TuneConfig::nodes`]).
///
/// Every node runs the same command with the same data, configuration and replica count,
/// differing only in `rank` and `address`; node `rank` computes the micro-batches of global
/// replicas `rank × data_parallel …`. Start the orchestrator first, anywhere the nodes reach:
/// `resa collective-orchestrator --port 7600`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nodes {
    /// Processes in the run (at least 1).
    pub count: u32,
    /// This process's index, `0 … count − 1`.
    pub rank: u32,
    /// The orchestrator's address, `ws://HOST:PORT`.
    pub orchestrator: String,
    /// Where the other nodes reach this one's tensor service, `ws://HOST:PORT` (the port is
    /// opened here on all interfaces).
    pub address: String,
    /// Seconds to wait for the orchestrator and the other nodes at the start (they may be
    /// started minutes apart) before giving up with an error.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    600
}

impl Nodes {
    /// Checks the values (rank below count, both addresses `ws://HOST:PORT`) and returns the
    /// port of this node's tensor service.
    pub fn validate(&self) -> Result<u16> {
        if self.count == 0 {
            return Err(Error::option("nodes.count", "must be at least 1"));
        }
        if self.rank >= self.count {
            return Err(Error::option(
                "nodes.rank",
                format!("{} is not below the node count {}", self.rank, self.count),
            ));
        }
        if self.timeout_secs == 0 {
            return Err(Error::option("nodes.timeout_secs", "must be positive"));
        }
        ws_port("nodes.orchestrator", &self.orchestrator)?;
        ws_port("nodes.address", &self.address)
    }
}

/// The port of `ws://HOST:PORT`, or an error naming `option`.
fn ws_port(option: &str, address: &str) -> Result<u16> {
    let bad = || Error::option(option, format!("expected ws://HOST:PORT, got {address:?}"));
    let rest = address.strip_prefix("ws://").ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains('/') {
        return Err(bad());
    }
    port.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(bad)
}

/// burn-collective keeps one server per backend type in the process: two runs at once (tests
/// in threads) would meet in it, so a run holds this while it is registered.
static IN_USE: Mutex<()> = Mutex::new(());

/// The registration of this process's replicas; dropping it unregisters them.
pub(crate) struct Collective<B: Backend> {
    peers: Vec<PeerId>,
    _guard: MutexGuard<'static, ()>,
    _backend: std::marker::PhantomData<B>,
}

impl<B: Backend> Collective<B> {
    /// Registers `devices.len()` local peers (one per replica) and, with `nodes`, this node
    /// with the orchestrator; waits at most `nodes.timeout_secs` (60 s without nodes).
    pub(crate) fn register(devices: Vec<B::Device>, nodes: Option<&Nodes>) -> Result<Self> {
        let guard = IN_USE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let local = devices.len();
        let mut config = CollectiveConfig::default()
            .with_num_devices(local)
            .with_local_all_reduce_strategy(AllReduceStrategy::Tree(2));
        let mut first = 0u32;
        let mut timeout = Duration::from_secs(60);
        if let Some(n) = nodes {
            let port = n.validate()?;
            // burn-collective only logs a failed bind (and the other nodes would then wait):
            // the port is checked here.
            drop(std::net::TcpListener::bind(("0.0.0.0", port)).map_err(|e| {
                Error::Collective(format!("this node's tensor service cannot listen on port {port} ({e})"))
            })?);
            let parse =
                |option: &str, a: &str| a.parse().map_err(|e: String| Error::option(option, format!("{a:?}: {e}")));
            config = config
                .with_num_nodes(n.count)
                .with_global_address(parse("nodes.orchestrator", &n.orchestrator)?)
                .with_node_address(parse("nodes.address", &n.address)?)
                .with_data_service_port(port)
                .with_global_all_reduce_strategy(AllReduceStrategy::Ring);
            first = n.rank * local as u32;
            timeout = Duration::from_secs(n.timeout_secs);
        }
        reset_collective::<B>();
        let peers: Vec<PeerId> = (0..local as u32).map(|i| PeerId::from(first + i)).collect();
        let (tx, rx) = mpsc::channel();
        for (&id, device) in peers.iter().zip(devices) {
            let (tx, config) = (tx.clone(), config.clone());
            // Registration blocks until every local peer (and every node) has registered.
            std::thread::spawn(move || {
                let _ = tx.send(register::<B>(id, device, config).map_err(|e| format!("{e:?}")));
            });
        }
        let deadline = std::time::Instant::now() + timeout;
        for _ in 0..local {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Error::Collective(format!("registering the replicas failed: {e}"))),
                Err(_) => {
                    let whom = nodes.map_or_else(
                        || "the other local replicas".to_string(),
                        |n| {
                            format!(
                                "the orchestrator at {} and all {} nodes (is `resa collective-orchestrator` running \
                                 there, and has every node started?)",
                                n.orchestrator, n.count
                            )
                        },
                    );
                    return Err(Error::Collective(format!("no answer from {whom} within {} s", timeout.as_secs())));
                }
            }
        }
        Ok(Collective { peers, _guard: guard, _backend: std::marker::PhantomData })
    }

    /// The peer of local replica `i`.
    pub(crate) fn peer(&self, i: usize) -> PeerId {
        self.peers[i]
    }
}

impl<B: Backend> Drop for Collective<B> {
    fn drop(&mut self) {
        for &id in &self.peers {
            let _ = finish_collective::<B>(id);
        }
    }
}

/// The sum over all peers of `flat` (called by every peer, each in its own thread).
pub(crate) fn sum<B: Backend>(peer: PeerId, flat: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
    let out = all_reduce::<B>(peer, flat.into_primitive().tensor(), ReduceOperation::Sum)
        .map_err(|e| Error::Collective(format!("all-reduce failed: {e:?}")))?;
    Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(rank: u32, orchestrator: &str, address: &str) -> Nodes {
        Nodes { count: 2, rank, orchestrator: orchestrator.into(), address: address.into(), timeout_secs: 5 }
    }

    #[test]
    fn node_addresses_are_checked() {
        assert_eq!(nodes(1, "ws://10.0.0.1:7600", "ws://localhost:7601").validate().expect("valid"), 7601);
        for (n, option) in [
            (nodes(2, "ws://a:1", "ws://b:2"), "nodes.rank"),
            (nodes(0, "a:1", "ws://b:2"), "nodes.orchestrator"),
            (nodes(0, "ws://a:1", "ws://b"), "nodes.address"),
            (nodes(0, "ws://a:1", "ws://b:0"), "nodes.address"),
            (nodes(0, "ws://a:1", "ws://:5"), "nodes.address"),
            (nodes(0, "ws://a:1", "http://b:2"), "nodes.address"),
        ] {
            match n.validate() {
                Err(Error::Options { option: o, .. }) => assert_eq!(o, option, "{n:?}"),
                other => panic!("{n:?}: expected an error on {option}, got {other:?}"),
            }
        }
    }
}
