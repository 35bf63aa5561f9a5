use std::{
    marker::PhantomData,
    sync::{Arc, Mutex},
    vec,
};

use burn_communication::{CommunicationChannel, Message, Protocol, ProtocolClient};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, RwLock};

use crate::{NodeId, global::shared::GlobalCollectiveError, node::base::NodeState};

/// Handles the status of sync requests from other nodes
pub(crate) struct SyncService<P: Protocol> {
    /// Current node's state, shared with the thread that does aggregations
    node_state: Arc<RwLock<Option<NodeState>>>,
    /// The number of peers that have requested to sync with us since the last successful sync.
    syncing_peers: Mutex<Vec<NodeId>>,
    /// Notification on each incoming sync request
    sync_notif: Notify,

    _p: PhantomData<P>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SyncRequest(NodeId);

impl<P: Protocol> SyncService<P> {
    pub fn new(node_state: Arc<RwLock<Option<NodeState>>>) -> Self {
        Self {
            node_state,
            syncing_peers: Mutex::new(vec![]),
            sync_notif: Notify::new(),
            _p: PhantomData,
        }
    }

    fn add_syncing_peer(&self, peer: NodeId) {
        let mut syncing_peers = self.syncing_peers.lock().unwrap();
        syncing_peers.push(peer);
    }

    /// Sync with all peers.
    ///
    /// resa-rs patch: a peer that cannot be reached is an error naming it, not a panic.
    pub async fn sync(&self) -> Result<(), GlobalCollectiveError> {
        // we can't sync while we register
        let node_state = self.node_state.read().await;
        let node_state = node_state
            .as_ref()
            .ok_or(GlobalCollectiveError::AllReduceBeforeRegister)?;

        // this peer is syncing
        self.add_syncing_peer(node_state.node_id);
        for (id, addr) in &node_state.nodes {
            if *id == node_state.node_id {
                continue;
            }

            let lost = || GlobalCollectiveError::PeerLostAt(addr.to_string());
            let mut connection = P::Client::connect(addr.clone(), "sync")
                .await
                .ok_or_else(lost)?;
            let msg = SyncRequest(node_state.node_id);
            let sync_bytes =
                rmp_serde::to_vec(&msg).map_err(|_| GlobalCollectiveError::InvalidMessage)?;
            connection
                .send(Message::new(sync_bytes.into()))
                .await
                .map_err(|_| lost())?;
        }
        let mut all_node_ids = node_state.nodes.keys().cloned().collect::<Vec<_>>();
        all_node_ids.sort();
        loop {
            // resa-rs patch: listen before checking, so that a request arriving between the
            // check and the wait is not missed (`notify_waiters` wakes only current waiters).
            let notified = self.sync_notif.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                // resa-rs patch: the list itself is updated (0.21.0 cleared a copy of it, so
                // every sync after the first waited forever), and only one request of each
                // node is taken: a node already in the next sync keeps its request.
                let mut syncing_peers = self.syncing_peers.lock().unwrap();
                if all_node_ids.iter().all(|id| syncing_peers.contains(id)) {
                    for id in &all_node_ids {
                        if let Some(at) = syncing_peers.iter().position(|p| p == id) {
                            syncing_peers.remove(at);
                        }
                    }
                    return Ok(());
                }
            }
            // Wait for the next sync to come in
            notified.await
        }
    }

    pub async fn handle_sync_connection<C: CommunicationChannel>(&self, mut channel: C) {
        // resa-rs patch: a connection that closes or sends garbage is dropped, not a panic.
        let Ok(Some(msg)) = channel.recv().await else {
            return;
        };
        let Ok(msg) = rmp_serde::from_slice::<SyncRequest>(&msg.data) else {
            return;
        };

        self.add_syncing_peer(msg.0);

        self.sync_notif.notify_waiters();
    }
}
