//! The DataMesh node: a libp2p Kademlia swarm that stores other peers' shards in RocksDB
//! and puts and gets its owner's files through the core pipeline, behind a local HTTP
//! API. See ARCHITECTURE.md for the map.

pub mod api;
pub mod catalog;
pub mod check;
pub mod db;
pub mod faults;
mod fifo;
pub mod files;
pub mod lease;
pub mod metrics;
pub mod network;
pub mod node;
pub mod protocol;
pub mod records;
pub mod serve;
pub mod store;
mod ui;
pub use ui::web;

pub use api::ApiToken;
pub use check::{
    AuditReport, AuditScope, CheckError, CheckReport, Checker, Health, RepairError, SelfCheck,
};
pub use faults::TestFaults;
pub use files::{
    FileKeys, Files, FilesConfig, GetError, KeyAccess, KeyProvider, KeyProviderError,
    KeyUsageError, PutError, ReencryptError, ReencryptReport, RemoveError, RemoveReport,
    RewrapError, RewrapReport, Unlocked,
};
pub use network::{Network, NetworkConfig, NetworkError};
pub use node::{Node, NodeConfig, NodeError};
pub use store::{DeleteOutcome, PutOutcome, ShardStore, StoreConfig, StoreError};

/// The libp2p version the node is built on (for identity types).
pub use libp2p;
