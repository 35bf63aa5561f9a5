//! The processes of a multi-node Stage II run, as one of them sees them: plain
//! configuration, checked here; running them needs the `collective` feature.

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
    /// started minutes apart), and for the other nodes in each step's all-reduce, before
    /// giving up with an error (a node lost, or its network gone).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

/// The longest `address` a node may have, in bytes (the nodes exchange their addresses at
/// the start, to name a lost one).
pub(crate) const MAX_ADDRESS_BYTES: usize = 256;

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
        if self.address.len() > MAX_ADDRESS_BYTES {
            return Err(Error::option("nodes.address", format!("longer than {MAX_ADDRESS_BYTES} bytes")));
        }
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
