//! Virus scanning with clamd (Điều 4 khoản 6, Điều 15 khoản 5, Điều 18 khoản 4).
//!
//! [`clamd`] talks to one clamd (PING, zINSTREAM, reply parsing); [`pool`] spreads
//! scans over several clamd with health probing, failover, timeouts and a deadline
//! per message. What a scan found is a [`ScanOutcome`]; `crate::rules::virus` turns
//! it into violations (a virus, or the internal clamd-failure rules that the
//! policy's judge answers with `on_failure`) and the `X-Virus-*` headers.

pub mod clamd;
pub mod pool;

use serde::Deserialize;

use crate::policy::{ByteSize, Policy, Problem, Seconds};
pub use crate::rule::OnFailure;

pub use clamd::{ClamdAddr, ClamdAnswer, ClamdError};
pub use pool::{EndpointHealth, Scanner};

/// What is sent to clamd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanMode {
    /// The decoded bytes of every leaf part except the message's own text body,
    /// each part by itself, the parts of one message concurrently.
    #[default]
    Attachments,
    /// The raw message as one stream, as clamav-milter does (clamd decodes MIME).
    Message,
}

/// `[clamav]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClamavPolicy {
    /// `false` turns virus scanning off entirely.
    pub enabled: bool,
    /// clamd sockets: `unix:/PATH` or `tcp:HOST:PORT` (`inet:HOST:PORT` too).
    /// Scans are spread over the healthy ones; a failing one is taken out of
    /// service until it answers PING again.
    pub endpoints: Vec<String>,
    /// `attachments` (default) or `message`.
    pub scan: ScanMode,
    /// `tempfail` (default), `accept` or `reject`.
    pub on_failure: OnFailure,
    /// clamd's `StreamMaxLength`. A part (or, in message mode, a message) bigger
    /// than this is not sent; it gets the `on_failure` action.
    pub max_scan_size: ByteSize,
    /// Time to open a connection to clamd.
    pub connect_timeout: Seconds,
    /// Time for one scan of a small part, once connected ...
    pub scan_timeout: Seconds,
    /// ... plus this much per started MiB of the part.
    pub scan_timeout_per_mib: Seconds,
    /// Every scan of one message together, retries included, ends within this.
    /// Keep it below Postfix's `milter_content_timeout` (300 s).
    pub message_deadline: Seconds,
    /// How often every endpoint is sent PING (to take it out or put it back).
    pub probe_interval: Seconds,
    /// INSTREAM chunk size.
    pub chunk_size: ByteSize,
    /// Scans in flight per endpoint; more wait (keep it at or below clamd's
    /// `MaxThreads`).
    pub max_concurrent_scans: usize,
    /// Parts of one message scanned at the same time.
    pub max_parallel_parts: usize,
    /// Endpoints tried for one part before giving up (each at most once).
    pub max_attempts: usize,
    /// Write `X-Virus-Scanned` and `X-Virus-Status` on delivered mail.
    pub add_headers: bool,
    pub scanned_header: String,
    /// Value of the scanned header.
    pub scanned_value: String,
    /// `Clean`, `Infected (Signature)` or `Unscanned`.
    pub status_header: String,
}

impl Default for ClamavPolicy {
    fn default() -> Self {
        ClamavPolicy {
            enabled: true,
            endpoints: vec!["unix:/run/clamav/clamd.ctl".into()],
            scan: ScanMode::Attachments,
            on_failure: OnFailure::Tempfail,
            max_scan_size: ByteSize::mib(25),
            connect_timeout: Seconds::secs(5),
            scan_timeout: Seconds::secs(30),
            scan_timeout_per_mib: Seconds::secs(2),
            message_deadline: Seconds::secs(240),
            probe_interval: Seconds::secs(10),
            chunk_size: ByteSize(64 * 1024),
            max_concurrent_scans: 8,
            max_parallel_parts: 4,
            max_attempts: 3,
            add_headers: true,
            scanned_header: "X-Virus-Scanned".into(),
            scanned_value: "ClamAV using congvu-milter".into(),
            status_header: "X-Virus-Status".into(),
        }
    }
}

/// Postfix's default `milter_content_timeout`.
const POSTFIX_CONTENT_TIMEOUT_SECS: u64 = 300;
/// Largest INSTREAM chunk accepted in the policy.
const MAX_CHUNK_SIZE: u64 = 16 * 1024 * 1024;

impl ClamavPolicy {
    /// The time one scan of `size` bytes may take once connected.
    pub fn scan_timeout_for(&self, size: u64) -> std::time::Duration {
        let mib = size.div_ceil(1024 * 1024);
        let extra = self
            .scan_timeout_per_mib
            .get()
            .saturating_mul(u32::try_from(mib).unwrap_or(u32::MAX));
        self.scan_timeout.get().saturating_add(extra)
    }

    pub fn validate(&self, policy: &Policy) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.enabled && self.endpoints.is_empty() {
            problems.push(Problem::error(
                "clamav.endpoints",
                "no clamd endpoint; give at least one, or set enabled = false",
            ));
        }
        let mut seen = Vec::new();
        for e in &self.endpoints {
            match ClamdAddr::parse(e) {
                Ok(addr) => {
                    if seen.contains(&addr) {
                        problems.push(Problem::warning(
                            "clamav.endpoints",
                            format!("{e:?} is listed twice"),
                        ));
                    }
                    seen.push(addr);
                }
                Err(msg) => problems.push(Problem::error("clamav.endpoints", msg)),
            }
        }
        for (key, value) in [
            ("connect_timeout", self.connect_timeout),
            ("scan_timeout", self.scan_timeout),
            ("message_deadline", self.message_deadline),
            ("probe_interval", self.probe_interval),
        ] {
            if value.get().is_zero() {
                problems.push(Problem::error(
                    format!("clamav.{key}"),
                    "must be greater than zero",
                ));
            }
        }
        for (key, value) in [
            ("max_concurrent_scans", self.max_concurrent_scans),
            ("max_parallel_parts", self.max_parallel_parts),
            ("max_attempts", self.max_attempts),
        ] {
            if value == 0 {
                problems.push(Problem::error(
                    format!("clamav.{key}"),
                    "must be at least 1",
                ));
            }
        }
        if self.chunk_size.bytes() < 1024 || self.chunk_size.bytes() > MAX_CHUNK_SIZE {
            problems.push(Problem::error(
                "clamav.chunk_size",
                "must be between 1 KiB and 16 MiB (64 KiB is a good value)",
            ));
        }
        if self.max_scan_size.bytes() == 0 || self.max_scan_size.bytes() > u64::from(u32::MAX) {
            problems.push(Problem::error(
                "clamav.max_scan_size",
                "must be between 1 byte and 4 GiB (clamd's StreamMaxLength)",
            ));
        }
        let floor = self
            .connect_timeout
            .get()
            .saturating_add(self.scan_timeout.get());
        if !self.message_deadline.get().is_zero() && self.message_deadline.get() < floor {
            problems.push(Problem::error(
                "clamav.message_deadline",
                format!(
                    "{} is shorter than connect_timeout + scan_timeout ({:?}): no scan could finish",
                    self.message_deadline, floor
                ),
            ));
        }
        if self.message_deadline.get().as_secs() >= POSTFIX_CONTENT_TIMEOUT_SECS {
            problems.push(Problem::warning(
                "clamav.message_deadline",
                format!(
                    "{} is not below Postfix's milter_content_timeout ({POSTFIX_CONTENT_TIMEOUT_SECS}s)",
                    self.message_deadline
                ),
            ));
        }
        for (key, name) in [
            ("scanned_header", &self.scanned_header),
            ("status_header", &self.status_header),
        ] {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                problems.push(Problem::error(
                    format!("clamav.{key}"),
                    "not a valid header name",
                ));
            }
        }
        if self
            .scanned_header
            .eq_ignore_ascii_case(&self.status_header)
        {
            problems.push(Problem::error(
                "clamav.status_header",
                "must differ from scanned_header",
            ));
        }
        if !self
            .scanned_value
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b))
        {
            problems.push(Problem::error(
                "clamav.scanned_value",
                "must be one line of printable ASCII",
            ));
        }
        if self.enabled {
            let attachments = policy.limits.max_attachments_size;
            if self.max_scan_size < attachments {
                problems.push(Problem::error(
                    "clamav.max_scan_size",
                    format!(
                        "{} is below limits.max_attachments_size ({attachments}): allowed attachments could not be scanned; raise clamd's StreamMaxLength and this value",
                        self.max_scan_size
                    ),
                ));
            }
            let message = policy.limits.max_message_size;
            if self.scan == ScanMode::Message && self.max_scan_size < message {
                problems.push(Problem::warning(
                    "clamav.max_scan_size",
                    format!(
                        "scan = \"message\": messages between {} and limits.max_message_size ({message}) get the on_failure action ({})",
                        self.max_scan_size,
                        self.on_failure.as_str()
                    ),
                ));
            }
        }
        problems
    }
}

/// A virus clamd found in one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The part's label (its name or position; `message` in message mode).
    pub label: String,
    /// clamd's signature name (`Eicar-Test-Signature`, `Win.Trojan.X-1`).
    pub signature: String,
}

/// Why one part has no verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unscanned {
    pub label: String,
    pub problem: ScanProblem,
}

/// What went wrong with one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanProblem {
    /// No clamd answered: connection refused, I/O error, timeout, the message's
    /// deadline, every endpoint tried.
    NoAnswer(String),
    /// clamd answered ERROR (other than the size limit), or something unparsable.
    Error(String),
    /// Bigger than clamd takes: `limit` is ours (`max_scan_size`) when we did not
    /// send it, `None` when clamd said "size limit exceeded".
    SizeLimit { size: u64, limit: Option<u64> },
}

impl std::fmt::Display for ScanProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanProblem::NoAnswer(why) => write!(f, "no answer from clamd: {why}"),
            ScanProblem::Error(text) => write!(f, "clamd error: {text}"),
            ScanProblem::SizeLimit {
                size,
                limit: Some(limit),
            } => write!(
                f,
                "{} exceeds max_scan_size {}",
                ByteSize(*size),
                ByteSize(*limit)
            ),
            ScanProblem::SizeLimit { size, limit: None } => {
                write!(
                    f,
                    "{} exceeds clamd's StreamMaxLength (INSTREAM size limit exceeded)",
                    ByteSize(*size)
                )
            }
        }
    }
}

/// What scanning one message gave.
///
/// Precedence when parts differ: a virus anywhere makes the message
/// [`Infected`](ScanOutcome::Infected) (the unscanned parts are listed too);
/// otherwise a part over a size limit makes it
/// [`SizeLimit`](ScanOutcome::SizeLimit); otherwise any part without an answer
/// makes it [`Failed`](ScanOutcome::Failed). [`Clean`](ScanOutcome::Clean) only
/// when every part was answered OK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanOutcome {
    /// Every part was scanned and clamd answered OK for each.
    Clean { parts_scanned: usize },
    /// clamd found at least one virus.
    Infected {
        findings: Vec<Detection>,
        parts_scanned: usize,
        /// Parts that got no answer besides (empty when every part was scanned).
        unscanned: Vec<Unscanned>,
    },
    /// Some part got no usable answer (no clamd reachable, timeout, deadline,
    /// ERROR reply). Never clean.
    Failed {
        reason: String,
        parts_scanned: usize,
        unscanned: Vec<Unscanned>,
    },
    /// Some part was bigger than clamd accepts (ours or clamd's limit).
    SizeLimit {
        reason: String,
        parts_scanned: usize,
        unscanned: Vec<Unscanned>,
    },
}

impl ScanOutcome {
    /// Combines per-part results. `results` holds one entry per part.
    pub fn from_parts(results: Vec<(String, Result<Option<String>, ScanProblem>)>) -> Self {
        let mut findings = Vec::new();
        let mut unscanned = Vec::new();
        let mut parts_scanned = 0;
        for (label, result) in results {
            match result {
                Ok(None) => parts_scanned += 1,
                Ok(Some(signature)) => {
                    parts_scanned += 1;
                    findings.push(Detection { label, signature });
                }
                Err(problem) => unscanned.push(Unscanned { label, problem }),
            }
        }
        if !findings.is_empty() {
            return ScanOutcome::Infected {
                findings,
                parts_scanned,
                unscanned,
            };
        }
        if unscanned.is_empty() {
            return ScanOutcome::Clean { parts_scanned };
        }
        let reason = unscanned
            .iter()
            .map(|u| format!("{}: {}", u.label, u.problem))
            .collect::<Vec<_>>()
            .join("; ");
        if unscanned
            .iter()
            .any(|u| matches!(u.problem, ScanProblem::SizeLimit { .. }))
        {
            ScanOutcome::SizeLimit {
                reason,
                parts_scanned,
                unscanned,
            }
        } else {
            ScanOutcome::Failed {
                reason,
                parts_scanned,
                unscanned,
            }
        }
    }

    /// True only when every part got an answer (OK or FOUND).
    pub fn fully_scanned(&self) -> bool {
        match self {
            ScanOutcome::Clean { .. } => true,
            ScanOutcome::Infected { unscanned, .. } => unscanned.is_empty(),
            ScanOutcome::Failed { .. } | ScanOutcome::SizeLimit { .. } => false,
        }
    }

    pub fn is_clean(&self) -> bool {
        matches!(self, ScanOutcome::Clean { .. })
    }

    /// Parts that got no verdict.
    pub fn unscanned(&self) -> &[Unscanned] {
        match self {
            ScanOutcome::Clean { .. } => &[],
            ScanOutcome::Infected { unscanned, .. }
            | ScanOutcome::Failed { unscanned, .. }
            | ScanOutcome::SizeLimit { unscanned, .. } => unscanned,
        }
    }

    /// Short name for logs and metrics: `clean`, `infected`, `failed`, `size_limit`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ScanOutcome::Clean { .. } => "clean",
            ScanOutcome::Infected { .. } => "infected",
            ScanOutcome::Failed { .. } => "failed",
            ScanOutcome::SizeLimit { .. } => "size_limit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<Problem> {
        let policy: Policy = toml::from_str(text).unwrap();
        policy.clamav.validate(&policy)
    }

    fn keys(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert!(problems("").is_empty(), "{:?}", problems(""));
        let d = ClamavPolicy::default();
        assert_eq!(d.max_scan_size, ByteSize::mib(25));
        assert_eq!(d.on_failure, OnFailure::Tempfail);
        assert_eq!(d.scan, ScanMode::Attachments);
        assert_eq!(d.chunk_size.bytes(), 65536);
    }

    #[test]
    fn all_keys_parse() {
        let p: Policy = toml::from_str(
            r#"
[clamav]
enabled = true
endpoints = ["unix:/tmp/c.sock", "tcp:127.0.0.1:3310", "inet:[::1]:3310"]
scan = "message"
on_failure = "accept"
max_scan_size = "30 MiB"
connect_timeout = "2s"
scan_timeout = "20s"
scan_timeout_per_mib = "500ms"
message_deadline = "200s"
probe_interval = "5s"
chunk_size = "128 KiB"
max_concurrent_scans = 4
max_parallel_parts = 2
max_attempts = 2
add_headers = false
scanned_header = "X-Scanned"
scanned_value = "ClamAV at mx1"
status_header = "X-Status"
"#,
        )
        .unwrap();
        assert_eq!(p.clamav.scan, ScanMode::Message);
        assert_eq!(p.clamav.on_failure, OnFailure::Accept);
        assert!(p.clamav.validate(&p).is_empty());
        assert!(toml::from_str::<Policy>("[clamav]\nscan = \"body\"\n").is_err());
        assert!(toml::from_str::<Policy>("[clamav]\non_failur = \"accept\"\n").is_err());
    }

    #[test]
    fn scan_size_below_attachment_limit_is_refused() {
        let p = problems("[clamav]\nmax_scan_size = \"10 MiB\"\n");
        assert_eq!(keys(&p), ["clamav.max_scan_size"]);
        assert!(p[0].message.contains("max_attachments_size"), "{p:?}");
        // Off: nothing to check against.
        assert!(problems("[clamav]\nenabled = false\nmax_scan_size = \"10 MiB\"\n").is_empty());
    }

    #[test]
    fn message_mode_with_small_scan_size_warns() {
        let p = problems("[clamav]\nscan = \"message\"\nmax_scan_size = \"20 MiB\"\n");
        assert_eq!(keys(&p), ["clamav.max_scan_size"]);
        assert_eq!(p[0].severity, crate::policy::load::Severity::Warning);
    }

    #[test]
    fn bad_values_are_errors_with_keys() {
        let p = problems(
            "[clamav]\nendpoints = [\"clamd:3310\", \"tcp:host\", \"unix:relative\"]\nconnect_timeout = 0\nmax_attempts = 0\nchunk_size = 10\nstatus_header = \"X Bad\"\n",
        );
        let k = keys(&p);
        assert_eq!(
            k.iter().filter(|k| **k == "clamav.endpoints").count(),
            3,
            "{p:?}"
        );
        for key in [
            "clamav.connect_timeout",
            "clamav.max_attempts",
            "clamav.chunk_size",
            "clamav.status_header",
        ] {
            assert!(k.contains(&key), "{key} missing in {p:?}");
        }
        let p = problems("[clamav]\nendpoints = []\n");
        assert_eq!(keys(&p), ["clamav.endpoints"]);
    }

    #[test]
    fn deadline_bounds() {
        let p = problems("[clamav]\nmessage_deadline = \"10s\"\n");
        assert_eq!(keys(&p), ["clamav.message_deadline"]);
        assert_eq!(p[0].severity, crate::policy::load::Severity::Error);
        let p = problems("[clamav]\nmessage_deadline = \"300s\"\n");
        assert_eq!(keys(&p), ["clamav.message_deadline"]);
        assert_eq!(p[0].severity, crate::policy::load::Severity::Warning);
    }

    #[test]
    fn scan_timeout_grows_with_size() {
        let c = ClamavPolicy::default();
        assert_eq!(c.scan_timeout_for(0).as_secs(), 30);
        assert_eq!(c.scan_timeout_for(1).as_secs(), 32);
        assert_eq!(c.scan_timeout_for(25 * 1024 * 1024).as_secs(), 80);
    }

    #[test]
    fn outcome_precedence() {
        let clean = |l: &str| (l.to_string(), Ok(None));
        let virus = |l: &str| (l.to_string(), Ok(Some("Eicar".to_string())));
        let down = |l: &str| {
            (
                l.to_string(),
                Err(ScanProblem::NoAnswer("connection refused".into())),
            )
        };
        let big = |l: &str| {
            (
                l.to_string(),
                Err(ScanProblem::SizeLimit {
                    size: 5,
                    limit: None,
                }),
            )
        };
        assert_eq!(
            ScanOutcome::from_parts(vec![clean("a"), clean("b")]),
            ScanOutcome::Clean { parts_scanned: 2 }
        );
        assert_eq!(
            ScanOutcome::from_parts(vec![]),
            ScanOutcome::Clean { parts_scanned: 0 }
        );
        let o = ScanOutcome::from_parts(vec![clean("a"), down("b"), virus("c")]);
        assert_eq!(o.as_str(), "infected");
        assert!(!o.fully_scanned());
        let o = ScanOutcome::from_parts(vec![clean("a"), down("b")]);
        assert_eq!(o.as_str(), "failed");
        assert!(!o.fully_scanned() && !o.is_clean());
        let o = ScanOutcome::from_parts(vec![down("a"), big("b")]);
        assert_eq!(o.as_str(), "size_limit");
        assert_eq!(o.unscanned().len(), 2);
    }
}
