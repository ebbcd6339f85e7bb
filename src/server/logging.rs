//! Log set-up, and the id that names a message in every line about it.
//!
//! Every line about a message starts with the Postfix queue id, as Postfix's own
//! lines do, so that `grep QUEUEID /var/log/mail.log` shows the milter's verdict
//! beside Postfix's story. Before Postfix has assigned a queue id (at MAIL FROM)
//! the connection's id stands in (`conn-17`). The line itself is written by
//! src/server/report.rs.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::message::Message;
use crate::policy::LogFormat;

/// Installs the global subscriber: text or JSON lines on stderr (journald picks
/// them up). `RUST_LOG` overrides the policy's level.
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("congvu_milter={level},warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The id that names a message in logs: the queue id, else the connection's.
pub fn message_id(msg: &Message) -> String {
    match msg.queue_id() {
        Some(q) => q.to_owned(),
        None => format!("conn-{}", msg.connection.id),
    }
}
