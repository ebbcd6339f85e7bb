//! The daemon: listeners, the connection cap, the policy in force (reloaded on
//! SIGHUP), and graceful shutdown.

mod listen;

pub use listen::ListenAddr;
