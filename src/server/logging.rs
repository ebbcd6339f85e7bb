//! Log set-up, and the id that names a message in every line about it.
//!
//! Every line about a message starts with the Postfix queue id, as Postfix's own
//! lines do, so that grepping the queue id in the journal (or in
//! /var/log/mail.log, where rsyslog writes one) shows the milter's verdict beside
//! Postfix's story. Before Postfix has assigned a queue id (at MAIL FROM) the
//! connection's id stands in (`conn-17`). The line itself is written by
//! src/server/report.rs.
//!
//! Text lines are `[TIME ][LEVEL ]MESSAGE FIELDS SPAN-FIELDS`: the level only when
//! it is not INFO, the message first so that it is what a reader sees first, and
//! the milter connection (`conn=`, `mta=`) last. Under systemd's journal
//! (`JOURNAL_STREAM` set) the journal stamps the time itself, and the level goes
//! in as a `<N>` syslog prefix, so `journalctl -p warning` selects warnings.

use std::io::IsTerminal;

use std::fmt::Write as _;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

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
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let _ = match format {
        LogFormat::Text => builder
            .event_format(TextLine {
                journal,
                timestamps: !journal,
            })
            .try_init(),
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

/// The text line format (see the module comment).
struct TextLine {
    /// Prefix each line with its syslog priority (`<4>`) for the journal.
    journal: bool,
    timestamps: bool,
}

impl<S, N> FormatEvent<S, N> for TextLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let level = *event.metadata().level();
        if self.journal {
            write!(writer, "<{}>", syslog_priority(level))?;
        }
        if self.timestamps {
            SystemTime.format_time(&mut writer)?;
            writer.write_char(' ')?;
        }
        if level != Level::INFO {
            write!(writer, "{level} ")?;
        }
        let mut line = String::new();
        ctx.field_format()
            .format_fields(Writer::new(&mut line), event)?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(line, " {fields}")?;
                }
            }
        }
        // One event, one line: a message that spans lines (a policy's errors)
        // would otherwise continue without its time or priority.
        writeln!(writer, "{}", line.replace('\n', " | "))
    }
}

/// sd-daemon(3) priority prefixes: `<3>` error, `<4>` warning, `<6>` info, `<7>` debug.
fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}
