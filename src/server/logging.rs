//! Log set-up and the one line per message.
//!
//! Every line about a message starts with the Postfix queue id, as Postfix's own
//! lines do, so that `grep QUEUEID /var/log/mail.log` shows the milter's verdict
//! beside Postfix's story. Before Postfix has assigned a queue id (at MAIL FROM)
//! the connection's id stands in (`conn-17`).

use std::io::IsTerminal;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use crate::message::Message;
use crate::policy::LogFormat;
use crate::verdict::Verdict;

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

/// Logs the verdict on one message (one line with everything an admin needs) and
/// counts it in the metrics.
pub fn log_verdict(msg: &Message, verdict: &Verdict, stage: &str, elapsed: Duration) {
    let id = message_id(msg);
    let client = match msg.connection.addr {
        Some(a) => a.to_string(),
        None => msg.connection.hostname.clone(),
    };
    // A rule that fired on several files is one rule of this message.
    let mut rules: Vec<&str> = Vec::new();
    for r in &verdict.reasons {
        if !rules.contains(&r.rule.as_str()) {
            rules.push(r.rule.as_str());
        }
    }
    let details: Vec<String> = verdict
        .reasons
        .iter()
        .map(|r| format!("{} ({}): {}", r.rule, r.article, r.detail))
        .collect();
    let m = crate::metrics::metrics();
    m.messages
        .with_label_values(&[verdict.action.as_str()])
        .inc();
    // Messages per rule: a rule that fired on several files counts once.
    let mut counted: Vec<(&str, &str)> = Vec::new();
    for r in &verdict.reasons {
        let key = (r.rule.as_str(), r.article.as_str());
        if !counted.contains(&key) {
            counted.push(key);
            m.verdicts
                .with_label_values(&[key.0, key.1, verdict.action.as_str()])
                .inc();
        }
    }
    m.message_size_bytes.observe(msg.raw.len() as f64);
    if stage == "eom" {
        m.decision_seconds.observe(elapsed.as_secs_f64());
    }
    let reply = verdict
        .reply
        .as_ref()
        .map(|r| r.render().replace("\r\n", " | "));
    tracing::info!(
        queue_id = %id,
        client = %client,
        sender = %format!("<{}>", msg.envelope.sender),
        recipients = %msg.envelope.recipients.join(","),
        size = msg.raw.len() as u64,
        action = verdict.action.as_str(),
        rules = %rules.join(","),
        stage,
        reply = reply.as_deref().unwrap_or(""),
        reasons = %details.join("; "),
        elapsed_ms = elapsed.as_millis() as u64,
        "{id}: {}",
        verdict.action.as_str()
    );
}
