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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use burn::collective::{
    AllReduceStrategy, CollectiveConfig, PeerId, ReduceOperation, all_reduce, finish_collective, register,
    reset_collective,
};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};

use crate::error::{Error, NodeLoss, Result};
use crate::nodes::Nodes;

/// burn-collective keeps one server per backend type in the process: two runs at once (tests
/// in threads) would meet in it, so a run holds this while it is registered.
static IN_USE: Mutex<()> = Mutex::new(());

/// How long the replicas of one process wait for each other in an all-reduce (they have
/// all finished their passes when it starts, so this only bounds a fault).
const LOCAL_TIMEOUT: Duration = Duration::from_secs(600);

/// The registration of this process's replicas; dropping it unregisters them.
pub(crate) struct Collective<B: Backend> {
    peers: Vec<PeerId>,
    /// How long an all-reduce may wait for the other replicas and nodes.
    timeout: Duration,
    /// Whether there are other nodes (an all-reduce that fails then lost one).
    nodes: bool,
    /// Replicas in the whole run: the ring between nodes needs vectors at least this long.
    world: usize,
    /// Set when an all-reduce failed: burn-collective's server may be stuck in it, and
    /// unregistering would then wait forever.
    failed: AtomicBool,
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
        Ok(Collective {
            peers,
            timeout: if nodes.is_some() { timeout } else { LOCAL_TIMEOUT },
            nodes: nodes.is_some(),
            world: local * nodes.map_or(1, |n| n.count as usize),
            failed: AtomicBool::new(false),
            _guard: guard,
            _backend: std::marker::PhantomData,
        })
    }

    /// The sum over all replicas of the run of one vector per local replica (`flats[i]` is
    /// local replica `i`'s); returns the primary's result. Each replica's all-reduce runs in
    /// its own thread, as burn-collective needs, and is waited for at most the node timeout:
    /// a node that is lost (killed, or its network gone) ends the wait with
    /// [`Error::NodeLost`] (the address of the peer whose connection closed, or the time
    /// waited), never a hang or a panic.
    pub(crate) fn sum(&self, flats: Vec<Tensor<B, 1>>) -> Result<Tensor<B, 1>> {
        let count = flats.len();
        // burn-collective's ring splits a vector into one slice per node: a shorter one is
        // padded with zeros (and cut back after).
        let len = flats.first().map_or(0, |f| f.dims()[0]);
        let flats: Vec<Tensor<B, 1>> = if len < self.world {
            flats
                .into_iter()
                .map(|f| {
                    let pad = Tensor::zeros([self.world - len], &f.device());
                    Tensor::cat(vec![f, pad], 0)
                })
                .collect()
        } else {
            flats
        };
        let (tx, rx) = mpsc::channel();
        for (i, flat) in flats.into_iter().enumerate() {
            let (tx, peer) = (tx.clone(), self.peers[i]);
            // Not scoped: a thread stuck in an all-reduce with a lost node must not keep
            // this one waiting; it ends with the process.
            std::thread::spawn(move || {
                let out = all_reduce::<B>(peer, flat.into_primitive().tensor(), ReduceOperation::Sum);
                let _ = tx.send((i, out.map(|t| Tensor::from_primitive(TensorPrimitive::Float(t)))));
            });
        }
        let deadline = Instant::now() + self.timeout;
        let mut primary = None;
        for _ in 0..count {
            let failure = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((0, Ok(t))) => {
                    primary = Some(t);
                    continue;
                }
                Ok((_, Ok(_))) => continue,
                Ok((_, Err(e))) => {
                    let message = format!("{e:?}");
                    NodeLoss { address: lost_peer(&message), waited_secs: None, detail: message, ..NodeLoss::default() }
                }
                Err(_) => NodeLoss { waited_secs: Some(self.timeout.as_secs()), ..NodeLoss::default() },
            };
            self.failed.store(true, Ordering::SeqCst);
            return Err(if self.nodes {
                Error::NodeLost(failure)
            } else {
                Error::Collective(match failure.waited_secs {
                    Some(s) => format!("the replicas' all-reduce did not end within {s} s"),
                    None => format!("all-reduce failed: {}", failure.detail),
                })
            });
        }
        let sum = primary.ok_or_else(|| Error::Collective("the primary replica's all-reduce gave no result".into()))?;
        Ok(if len < self.world { sum.slice(0..len) } else { sum })
    }
}

/// The address in burn-collective's "peer lost" error (`PeerLostAt("ws://…")`, from the
/// vendored copy), read from its debug form: the crates.io release has no such variant, so
/// naming it would not build against it.
fn lost_peer(message: &str) -> Option<String> {
    let rest = &message[message.find("PeerLostAt(\"")? + "PeerLostAt(\"".len()..];
    Some(rest[..rest.find('"')?].to_string())
}

impl<B: Backend> Drop for Collective<B> {
    fn drop(&mut self) {
        if self.failed.load(Ordering::SeqCst) {
            return;
        }
        for &id in &self.peers {
            let _ = finish_collective::<B>(id);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lost_peer_is_read_from_the_error() {
        let e = r#"Global(PeerLostAt("ws://10.0.0.2:7601"))"#;
        assert_eq!(super::lost_peer(e).as_deref(), Some("ws://10.0.0.2:7601"));
        assert_eq!(super::lost_peer("Global(PeerSentIncoherentTensor)"), None);
        assert_eq!(super::lost_peer(r#"PeerLostAt("unterminated"#), None);
    }
}
