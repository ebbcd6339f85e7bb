//! The policy file: its TOML schema, loading with errors that name file, line and
//! key, and the judge ([`judge`]) that maps a rule's violation to the action the
//! admins chose.
//!
//! Each rule's own settings live beside the rule ([`AttachmentPolicy`],
//! [`ClamavPolicy`], [`ForwardingPolicy`]); this module holds the sections every
//! rule shares (`[milter]`, `[domains]`, `[limits]`, `[rules.NAME]`, ...).

pub mod judge;
pub mod listen_addr;
pub mod load;
pub mod units;

use serde::Deserialize;

use crate::address::domain_matches;

pub use crate::notices::NoticesSection;
pub use crate::quarantine::QuarantineSection;
pub use crate::rules::attachments::AttachmentPolicy;
pub use crate::rules::forwarding::ForwardingPolicy;
pub use crate::scan::ClamavPolicy;
pub use judge::RuleSettings;
pub use listen_addr::ListenAddr;
pub use load::{ConfigError, LoadedPolicy, Problem};
pub use units::{ByteSize, Seconds};

/// Enforce the policy, or only log and tag what would have been refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Monitor,
}

/// The whole policy file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// `enforce` (default) or `monitor`: in monitor mode nothing is refused; what
    /// would have been is logged and tagged with a header.
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub milter: MilterSection,
    #[serde(default)]
    pub domains: DomainsSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub attachments: AttachmentPolicy,
    #[serde(default)]
    pub clamav: ClamavPolicy,
    #[serde(default)]
    pub forwarding: ForwardingPolicy,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub headers: HeadersSection,
    #[serde(default)]
    pub quarantine: QuarantineSection,
    #[serde(default)]
    pub notices: NoticesSection,
    #[serde(default)]
    pub audit: AuditSection,
    /// Per-rule action, exceptions and reply text, by rule name.
    #[serde(default)]
    pub rules: judge::RulesSection,
}

/// Where the milter listens unless `[milter] listen` says otherwise: below the
/// spool directory that Debian's chrooted smtpd sees as its root, where smtpd
/// names it `unix:/congvu-milter/milter.sock`. The Debian package makes the
/// directory (owner congvu-milter, group postfix, mode 0750).
pub const DEFAULT_SOCKET: &str = "unix:/var/spool/postfix/congvu-milter/milter.sock";

/// `[milter]`: the sockets Postfix connects to and the session limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MilterSection {
    /// Sockets in Postfix notation: `inet:HOST:PORT`, `inet6:[::1]:PORT`,
    /// `unix:/PATH`. Read at start; a reload does not move the sockets. By default
    /// a unix socket below Postfix's spool ([`DEFAULT_SOCKET`]), which only Postfix
    /// (group `postfix`) can reach; loopback TCP is for a Postfix on another host
    /// or outside the chroot.
    pub listen: Vec<String>,
    /// Permissions of unix sockets, octal (`"0660"`).
    pub socket_mode: String,
    /// Group owning unix sockets (`postfix` by default); unset keeps the daemon's.
    pub socket_group: Option<String>,
    /// Concurrent milter connections (one per SMTP session); more wait in the
    /// kernel's backlog.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Seconds,
    /// On SIGTERM, messages in flight get this long to finish.
    pub shutdown_grace: Seconds,
    /// How often to tell Postfix "still working" while a decision runs.
    pub progress_interval: Seconds,
    /// Largest milter frame accepted; bigger ones close the connection.
    pub max_frame_size: ByteSize,
    /// Recipients per message; past it the message is refused (550 5.5.3) and
    /// nothing more of it is kept. Above Postfix's `smtpd_recipient_limit` (1000).
    pub max_recipients: usize,
    /// Header fields per message; past it the message is refused (552 5.3.4) and
    /// nothing more of it is kept.
    pub max_headers: usize,
    /// Macro bytes one connection holds at once (its CONNECT/HELO macros and those
    /// of the message in progress; each macro counts its name, its value and 64
    /// bytes of bookkeeping). Past it the connection is closed as a protocol error.
    pub max_macro_bytes: ByteSize,
    /// A peer that does not take our replies for this long is dropped.
    pub write_timeout: Seconds,
}

impl Default for MilterSection {
    fn default() -> Self {
        MilterSection {
            listen: vec![DEFAULT_SOCKET.into()],
            socket_mode: "0660".into(),
            socket_group: Some("postfix".into()),
            max_connections: 512,
            idle_timeout: Seconds::secs(600),
            shutdown_grace: Seconds::secs(30),
            progress_interval: Seconds::secs(10),
            max_frame_size: ByteSize::mib(1),
            max_recipients: 10_000,
            max_headers: 1000,
            max_macro_bytes: ByteSize(64 * 1024),
            write_timeout: Seconds::secs(60),
        }
    }
}

/// `[domains]`: whose mail this is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainsSection {
    /// The domains of this mail system; each also covers its subdomains.
    pub local: Vec<String>,
    /// Domains of mailboxes issued by state agencies (Điều 4 khoản 4); each also
    /// covers its subdomains. Local domains always count as state domains.
    pub state: Vec<String>,
}

impl Default for DomainsSection {
    fn default() -> Self {
        DomainsSection {
            local: vec!["bacgiang.gov.vn".into()],
            state: vec!["gov.vn".into()],
        }
    }
}

impl DomainsSection {
    pub fn is_local(&self, domain: &str) -> bool {
        self.local.iter().any(|d| domain_matches(domain, d))
    }

    pub fn is_state(&self, domain: &str) -> bool {
        self.is_local(domain) || self.state.iter().any(|d| domain_matches(domain, d))
    }
}

/// `[limits]`: sizes and the bounds of inspection (Điều 10, and the safety of the
/// filter itself).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// The raw message as Postfix sends it; a declared `SIZE=` or a streamed body
    /// past this is refused at once (552 5.3.4) without buffering the rest.
    pub max_message_size: ByteSize,
    /// Decoded size of all attachments together (Điều 10: 15 MB).
    pub max_attachments_size: ByteSize,
    /// Archives inside archives are opened down to this depth.
    pub max_archive_depth: u32,
    /// Entries (files) inspected per message across all archives.
    pub max_archive_entries: u64,
    /// Bytes unpacked per message across all archives.
    pub max_unpacked_size: ByteSize,
    /// Largest unpacked/packed ratio of one archive entry before it counts as a bomb.
    pub max_compression_ratio: u64,
    /// MIME parts per message, nested messages included.
    pub max_mime_parts: u64,
    /// Attached messages inside attached messages, at most this deep.
    pub max_message_depth: u32,
    /// Last-resort time limit for inspecting one message.
    pub max_inspect_time: Seconds,
    /// Memory budget for message bytes buffered by all sessions together; past it,
    /// new messages get a tempfail rather than exhausting memory.
    pub max_buffered_bytes: ByteSize,
    /// Messages inspected at once; more wait their turn (at most
    /// `max_inspect_time`, then a tempfail). 0: the number of cores.
    pub max_concurrent_inspections: usize,
}

impl LimitsSection {
    /// Inspections at once: `max_concurrent_inspections`, or the number of cores.
    pub fn concurrent_inspections(&self) -> usize {
        match self.max_concurrent_inspections {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_message_size: ByteSize::mib(25),
            max_attachments_size: ByteSize::mib(15),
            max_archive_depth: 8,
            max_archive_entries: 10_000,
            max_unpacked_size: ByteSize::mib(512),
            max_compression_ratio: 1000,
            max_mime_parts: 10_000,
            max_message_depth: 100,
            max_inspect_time: Seconds::secs(60),
            max_buffered_bytes: ByteSize(2 * 1024 * 1024 * 1024),
            max_concurrent_inspections: 0,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// `HOST:PORT` for `/metrics`, `/healthz`, `/readyz`; empty turns it off.
    pub listen: String,
    /// Concurrent HTTP connections; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A client must have sent its request within this, counted from when it
    /// connected or got its last response (so also the keep-alive idle time).
    pub header_timeout: Seconds,
    /// Every HTTP connection is closed this long after it was accepted.
    pub connection_timeout: Seconds,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            listen: "127.0.0.1:9898".into(),
            max_connections: 16,
            header_timeout: Seconds::secs(5),
            connection_timeout: Seconds::secs(10),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` or `json`; `--log-format` on the command line wins.
    pub format: LogFormat,
    /// `error`, `warn`, `info` (one line per message), `debug`, `trace`.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// `[headers]`: headers the milter writes on delivered mail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersSection {
    /// Header added by the `tag` action and in monitor mode, naming the rule.
    pub tag_header: String,
}

impl Default for HeadersSection {
    fn default() -> Self {
        HeadersSection {
            tag_header: "X-Congvu-Policy".into(),
        }
    }
}

/// Where the audit record is written unless `[audit] file` says otherwise (the
/// unit's `LogsDirectory=`).
pub const DEFAULT_AUDIT_FILE: &str = "/var/log/congvu-milter/audit.jsonl";

/// `[audit]`: one JSON record per message (src/server/audit.rs), kept for the
/// operator's reports and for tracing a leaked file by its hash.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// Off unless the policy turns it on (the shipped policy does).
    pub enabled: bool,
    /// Appended to; reopened on reload (SIGHUP), as logrotate's `postrotate` asks.
    pub file: String,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            enabled: false,
            file: DEFAULT_AUDIT_FILE.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_domains_are_state_domains() {
        let d = DomainsSection {
            local: vec!["example.org".into()],
            state: vec![],
        };
        assert!(d.is_state("mail.example.org"));
        assert!(!d.is_state("gmail.com"));
    }
}
