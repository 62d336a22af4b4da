//! Test support shared by the workspace's tests.
//!
//! - [`FaultProxy`]: an HTTP proxy in front of an AWS endpoint (moto) that makes chosen AWS
//!   operations fail as AWS fails them (503 `ServiceUnavailableException`, 400
//!   `ThrottlingException`), counts the operations it sees, and can be stopped and started again
//!   on the same port (connections refused meanwhile), so that a test drives the real AWS SDK
//!   through an outage.

mod fault_proxy;

pub use fault_proxy::{Fault, FaultProxy};
