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
//!
//! This module exists with the `collective` feature; without it, the replicas of one
//! process sum on the first replica's device and a run of several nodes is refused.

use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use burn::collective::{
    AllReduceStrategy, CollectiveConfig, PeerId, ReduceOperation, all_reduce, finish_collective, register,
    reset_collective,
};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};

use crate::error::{Error, Result};
use crate::nodes::Nodes;

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
