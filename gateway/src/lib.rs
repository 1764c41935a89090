//! `cairn-gateway`: the HTTP path and trustless gateways and the RPC API.
//!
//! It sees only `cairn-node`'s facade. The routes arrive with the gateway issue.

pub use cairn_node as node;
