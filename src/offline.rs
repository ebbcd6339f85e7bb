//! The `scan` command: runs the daemon's pipeline on .eml files, with the envelope
//! and connection taken from the command line or from the message itself.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use serde::Serialize;

use crate::address;
use crate::message::{Connection, Message};
use crate::pipeline::{self, Decision, Facts, SignedDocumentFact};
use crate::policy::LoadedPolicy;
use crate::scan::Scanner;
use crate::verdict::{Action, HeaderEdit, Reason};

/// Envelope and connection for the messages, from the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ScanOptions {
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Envelope sender (default: the message's Return-Path, else From).
    #[arg(long)]
    pub from: Option<String>,
    /// Envelope recipient, repeatable (default: To and Cc of the message).
    #[arg(long = "rcpt")]
    pub rcpt: Vec<String>,
    /// The SMTP client's address (default 127.0.0.1).
    #[arg(long)]
    pub client_addr: Option<IpAddr>,
    /// SASL login name of the client, if it authenticated.
    #[arg(long)]
    pub auth: Option<String>,
    /// Postfix `{daemon_name}` of the receiving instance.
    #[arg(long)]
    pub daemon_name: Option<String>,
}

/// One line of `scan --json` output.
#[derive(Debug, Serialize)]
pub struct ScanReport {
    pub file: String,
    pub action: &'static str,
    pub reply: Option<String>,
    pub headers: Vec<HeaderEdit>,
    pub reasons: Vec<Reason>,
    /// Digitally signed documents among the files (detected, not verified).
    pub signed_documents: Vec<SignedDocumentFact>,
}

/// Builds the message the daemon would see for an .eml file.
pub fn message_from_file(bytes: &[u8], options: &ScanOptions) -> Message {
    let mut msg = Message::from_eml(bytes);
    let mut conn = Connection {
        id: 0,
        addr: Some(options.client_addr.unwrap_or(IpAddr::from([127, 0, 0, 1]))),
        ..Default::default()
    };
    conn.hostname = format!("[{}]", conn.addr.map(|a| a.to_string()).unwrap_or_default());
    if let Some(addr) = conn.addr {
        conn.macros.insert("client_addr", &addr.to_string());
    }
    if let Some(name) = &options.daemon_name {
        conn.macros.insert("daemon_name", name);
    }
    msg.connection = Arc::new(conn);
    if let Some(login) = &options.auth {
        msg.macros.insert("auth_authen", login);
    }
    msg.envelope.sender = match &options.from {
        Some(f) => address::bare(f).to_owned(),
        None => msg
            .header_values("Return-Path")
            .next()
            .or_else(|| msg.header_values("From").next())
            .and_then(|v| address::in_header(v).into_iter().next())
            .unwrap_or_default(),
    };
    msg.envelope.recipients = if options.rcpt.is_empty() {
        let mut rcpts = Vec::new();
        for name in ["To", "Cc"] {
            for value in msg.header_values(name) {
                rcpts.extend(address::in_header(value));
            }
        }
        rcpts
    } else {
        options
            .rcpt
            .iter()
            .map(|r| address::bare(r).to_owned())
            .collect()
    };
    msg.envelope.sender_params = vec![format!("SIZE={}", msg.raw.len())];
    msg
}

/// Judges one message the way the daemon would: the early checks at MAIL and
/// during the body, then the full decision.
pub async fn judge_message(
    msg: &Message,
    loaded: &LoadedPolicy,
    scanner: Option<&Scanner>,
) -> Decision {
    let policy = &loaded.policy;
    let early = |verdict| Decision {
        verdict,
        facts: Facts::default(),
    };
    if let Some(v) = pipeline::at_mail(msg, policy) {
        return early(v);
    }
    if let Some(v) = pipeline::at_body_chunk(msg, 0, policy) {
        return early(v);
    }
    pipeline::decide(msg, policy, scanner).await
}

/// Runs `scan` over files and prints one verdict per file.
pub fn run(loaded: &LoadedPolicy, options: &ScanOptions, files: &[PathBuf]) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("congvu-milter: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // The same clamd pool the daemon would use; its probe task runs in `runtime`.
    let scanner = if loaded.policy.clamav.enabled {
        let built = runtime.block_on(async { Scanner::new(&loaded.policy.clamav) });
        match built {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("congvu-milter: cannot set up clamd scanning: {e}");
                None
            }
        }
    } else {
        None
    };
    let mut worst = 0u8;
    for file in files {
        let report = match runtime.block_on(scan_file(loaded, scanner.as_ref(), options, file)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                worst = 2;
                continue;
            }
        };
        if report.action != Action::Accept.as_str() {
            worst = worst.max(1);
        }
        print_report(&report, options.json);
    }
    ExitCode::from(worst)
}

async fn scan_file(
    loaded: &LoadedPolicy,
    scanner: Option<&Scanner>,
    options: &ScanOptions,
    file: &Path,
) -> std::io::Result<ScanReport> {
    let bytes = std::fs::read(file)?;
    let msg = message_from_file(&bytes, options);
    let Decision { verdict, facts } = judge_message(&msg, loaded, scanner).await;
    Ok(ScanReport {
        file: file.display().to_string(),
        action: verdict.action.as_str(),
        reply: verdict.reply.as_ref().map(|r| r.render()),
        headers: verdict.headers,
        reasons: verdict.reasons,
        signed_documents: facts.signed_documents,
    })
}

fn print_report(report: &ScanReport, json: bool) {
    if json {
        match serde_json::to_string(report) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("{}: cannot encode report: {e}", report.file),
        }
        return;
    }
    let mut line = format!("{}: {}", report.file, report.action);
    if let Some(reply) = &report.reply {
        line.push_str(&format!(" \"{}\"", reply.replace("\r\n", " | ")));
    }
    for r in &report.reasons {
        line.push_str(&format!("\n    {} ({}): {}", r.rule, r.article, r.detail));
    }
    for d in &report.signed_documents {
        line.push_str(&format!(
            "\n    signed document ({}): {}",
            d.format.as_str(),
            d.path.join(" > ")
        ));
    }
    println!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_comes_from_headers_when_not_given() {
        let eml = b"Return-Path: <bounce@x.test>\nFrom: A <a@x.test>\nTo: \"B\" <b@y.test>, c@z.test\nCc: <d@w.test>\n\nhi\n";
        let msg = message_from_file(eml, &ScanOptions::default());
        assert_eq!(msg.envelope.sender, "bounce@x.test");
        assert_eq!(msg.envelope.recipients, vec!["b@y.test", "d@w.test"]);
    }

    #[test]
    fn command_line_envelope_wins() {
        let eml = b"From: a@x.test\nTo: b@y.test\n\nhi\n";
        let options = ScanOptions {
            from: Some("<s@bacgiang.gov.vn>".into()),
            rcpt: vec!["r@gmail.com".into()],
            auth: Some("s".into()),
            ..Default::default()
        };
        let msg = message_from_file(eml, &options);
        assert_eq!(msg.envelope.sender, "s@bacgiang.gov.vn");
        assert_eq!(msg.envelope.recipients, vec!["r@gmail.com"]);
        assert_eq!(msg.auth_login(), Some("s"));
    }
}
