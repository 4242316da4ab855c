//! Wire types shared by the Wardkey server and its clients (the workstation
//! agent, the load tool, tests), with no dependency beyond serde so that a
//! client never pulls in the server.

#![warn(missing_docs)]

pub mod broker;
pub mod metrics;
pub mod oauth;
pub mod tap;
