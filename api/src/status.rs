//! The node's state: `GET /v1/status` and `GET /v1/peers`.

use serde::{Deserialize, Serialize};

/// What `GET /v1/status` answers (and `datamesh status --json` prints).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The node's peer id.
    pub peer_id: String,
    /// Its listen addresses (absent: none).
    #[serde(default)]
    pub listen_addresses: Vec<String>,
    /// Peers with an open connection.
    pub connected_peers: u64,
    /// Peers in its Kademlia routing table.
    pub routing_table_peers: u64,
    /// Shards it stores.
    pub shards: u64,
    /// Bytes of shards it stores.
    pub bytes_stored: u64,
    /// Its storage quota in bytes.
    pub quota_bytes: u64,
    /// Files below full health at its last self-check; `null` before the first.
    pub files_below_full_health: Option<u64>,
    /// Their ids; `null` before the first self-check.
    pub below_full_health: Option<Vec<String>>,
    /// When the last self-check finished, seconds since the Unix epoch; `null` before
    /// the first.
    pub last_self_check: Option<u64>,
}

/// One entry of the routing table, as `GET /v1/peers` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The peer id.
    pub peer_id: String,
    /// Its known addresses.
    pub addresses: Vec<String>,
    /// Whether a connection is open.
    pub connected: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_before_the_first_self_check_says_null() -> Result<(), serde_json::Error> {
        let status = Status {
            peer_id: "12D3Koo".into(),
            listen_addresses: vec!["/ip4/127.0.0.1/tcp/1".into()],
            connected_peers: 5,
            routing_table_peers: 5,
            shards: 3,
            bytes_stored: 99,
            quota_bytes: 1,
            files_below_full_health: None,
            below_full_health: None,
            last_self_check: None,
        };
        let json = serde_json::to_value(&status)?;
        assert!(json["files_below_full_health"].is_null());
        assert!(json["last_self_check"].is_null());
        assert_eq!(json["routing_table_peers"], 5);
        assert_eq!(serde_json::from_value::<Status>(json)?, status);
        Ok(())
    }
}
