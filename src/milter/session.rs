//! One milter connection from the MTA: option negotiation, the per-command state
//! machine that assembles a [`Message`], and the translation of the [`Filter`]'s
//! [`Verdict`] into milter replies.
//!
//! [`run_session`] drives one connection to its end and reports how it ended in
//! [`SessionStats`], which the daemon can turn into metrics. Malformed input ends
//! the connection with a logged protocol error; it never panics.
//!
//! A peer cannot make a session hold unbounded memory or hang on to it forever:
//! - one frame is at most [`SessionConfig::max_frame_size`], refused from its
//!   length alone;
//! - body, header and recipient bytes are charged to the shared memory budget
//!   ([`MemoryBudget`], three budget bytes per byte held); past the budget the
//!   message gets the filter's [`Filter::over_budget`] verdict (a tempfail);
//! - recipients and header fields are also counted per message
//!   ([`SessionConfig::max_recipients`], [`SessionConfig::max_headers`]): the one
//!   past the cap gets the message the filter's [`Filter::over_limit`] verdict (a
//!   refusal: 550 5.5.3, 552 5.3.4 in the daemon);
//! - macro bytes are not charged to the budget but capped per connection
//!   ([`SessionConfig::max_macro_bytes`], so at most `max_connections` times that
//!   in all); a peer that floods macros is closed as a protocol error;
//! - a message that got a verdict keeps nothing of what follows it: its buffer,
//!   headers and recipients are freed at the verdict and later packets are only
//!   answered;
//! - a peer that sends nothing is dropped after [`SessionConfig::idle_timeout`],
//!   one that stops reading our replies after [`SessionConfig::write_timeout`].
//!
//! A refusal decided at a step the MTA wants no reply for (under Postfix: RCPT,
//! headers, body) goes out at the next step that has one, at the latest at end of
//! message.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, warn};

use super::budget::{MemoryBudget, Reservation, SESSION_BYTES_PER_BODY_BYTE};
use super::codec::{
    CodecError, Command, Family, MAX_REPLY_PAYLOAD, MilterCodec, PROTOCOL_VERSION, Reply, actions,
    macro_stage, protocol,
};
use super::{Filter, Limit};
use crate::address;
use crate::message::{Connection, Macros, Message};
use crate::verdict::{Action, HeaderEdit, SmtpReply, Verdict};

/// Actions we ask the MTA for: tag headers, change/delete headers, quarantine.
const WANTED_ACTIONS: u32 = actions::ADDHDRS | actions::CHGHDRS | actions::QUARANTINE;

/// Steps we ask the MTA to skip because the filter has no use for them.
const SKIPPED_STEPS: u32 = protocol::NOUNKNOWN | protocol::NODATA;

/// Steps after which we send no reply (when the MTA offers it). MAIL keeps its
/// reply: the filter can refuse there (a declared SIZE= over the limit). Body
/// chunks go without one, so the MTA streams the body instead of waiting for an
/// answer every 64 KiB; a refusal decided while the body streams (over the size
/// limit, memory budget full) is kept and given at EOM, which always has a reply.
const NO_REPLY_STEPS: u32 = protocol::NR_HELO
    | protocol::NR_BODY
    | protocol::NR_DATA
    | protocol::NR_UNKN
    | protocol::NR_EOH
    | protocol::NR_HDR
    | protocol::NR_CONN
    | protocol::NR_RCPT;

/// Oldest protocol version we talk to (Sendmail refuses version 1 too).
const MIN_VERSION: u32 = 2;

/// Longest quarantine reason we send; Postfix ignores it, Sendmail logs it.
const MAX_QUARANTINE_REASON: usize = 1000;

/// Tunables of one session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Cap on the payload of one incoming frame; larger frames end the connection.
    /// Default 1 MiB (Postfix can send a 100 KiB header in one packet).
    pub max_frame_size: usize,
    /// A peer that sends nothing for this long is dropped. Default 600 s: Postfix
    /// keeps the milter socket open for the whole SMTP session and waits up to
    /// `smtpd_timeout` (300 s) for each client command, so a shorter timeout could
    /// cut a legitimate slow session (and Postfix would then tempfail its mail).
    pub idle_timeout: Duration,
    /// While the filter decides at end of message, a progress reply goes out this
    /// often so the MTA's 300 s content timeout does not fire. Default 10 s; zero
    /// disables progress replies.
    pub progress_interval: Duration,
    /// Macro lists requested in the OPTNEG reply, by `SMFIM_*` stage number
    /// (see [`macro_stage`]), names space-separated. Sent only when the MTA offers
    /// SETSYMLIST; an empty list keeps the MTA's configured default.
    pub requested_macros: Vec<(u32, String)>,
    /// The memory budget shared by all sessions; `None` for no limit.
    pub memory_budget: Option<Arc<MemoryBudget>>,
    /// Recipients kept per message. The next one gets the message refused
    /// (550 5.5.3) and nothing more of it is kept. Default 10,000: above Postfix's
    /// `smtpd_recipient_limit` (1000), and Postfix's sendmail(1) has no limit.
    pub max_recipients: usize,
    /// Header fields kept per message. The next one gets the message refused
    /// (552 5.3.4) and nothing more of it is kept. Default 1000.
    pub max_headers: usize,
    /// Macro bytes the connection holds at once: its CONNECT and HELO macros and
    /// those of the message in progress (a name sent again replaces its value;
    /// each macro counts [`MACRO_OVERHEAD`] bytes more than its name and value).
    /// A MACRO packet that takes it past this closes the connection as a protocol
    /// error. Default 64 KiB; Postfix's default macros take about 3 KiB.
    pub max_macro_bytes: usize,
    /// A reply (or the replies to one end of message) the peer does not take
    /// within this ends the session: the peer stopped reading. Default 60 s,
    /// twice Postfix's `milter_command_timeout`.
    pub write_timeout: Duration,
}

impl SessionConfig {
    /// The macro lists requested by default.
    pub fn default_macros() -> Vec<(u32, String)> {
        vec![
            (
                macro_stage::CONNECT,
                "j {daemon_name} {client_addr} {client_port} {client_name}".to_owned(),
            ),
            (
                macro_stage::MAIL,
                "i {auth_type} {auth_authen} {mail_addr}".to_owned(),
            ),
            (macro_stage::RCPT, "i {rcpt_addr}".to_owned()),
            (macro_stage::DATA, "i".to_owned()),
            (macro_stage::EOH, "i".to_owned()),
            (macro_stage::EOM, "i".to_owned()),
        ]
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_frame_size: super::codec::DEFAULT_MAX_FRAME,
            idle_timeout: Duration::from_secs(600),
            progress_interval: Duration::from_secs(10),
            requested_macros: SessionConfig::default_macros(),
            memory_budget: None,
            max_recipients: 10_000,
            max_headers: 1000,
            max_macro_bytes: 64 * 1024,
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// Budget bytes taken per byte of the message stored
/// ([`SESSION_BYTES_PER_BODY_BYTE`]): header bytes count the same as body bytes
/// (the raw buffer and the parsed header list), and so do recipients.
const BUDGET_BYTES_PER_BYTE: u64 = SESSION_BYTES_PER_BODY_BYTE;

/// Bytes a header field adds to the raw buffer beyond its name and value
/// (`": "` and CRLF).
const HEADER_OVERHEAD: usize = 4;

/// Bytes a recipient costs beyond its address (the `String` in the list).
const RECIPIENT_OVERHEAD: usize = 24;

/// Bytes a macro counts beyond its name and value against
/// [`SessionConfig::max_macro_bytes`]: its map entry and two allocations, so that
/// many tiny macros cannot hold more than the cap suggests.
pub const MACRO_OVERHEAD: usize = 64;

/// The budget bytes to hold `bytes` of a message.
fn charge(bytes: usize) -> u64 {
    BUDGET_BYTES_PER_BYTE.saturating_mul(bytes as u64)
}

/// How a session ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SessionEnd {
    /// The MTA sent QUIT.
    Quit,
    /// The MTA closed the connection (possibly inside a frame).
    #[default]
    PeerClosed,
    /// Nothing arrived within [`SessionConfig::idle_timeout`].
    IdleTimeout,
    /// The peer took none of our replies within [`SessionConfig::write_timeout`].
    WriteTimeout,
    /// The daemon is shutting down and the session was between messages.
    Shutdown,
    /// Garbage, an over-cap or zero-length frame, an unknown command, or a
    /// command out of order. The text says which.
    ProtocolError(String),
    /// A read or write failed.
    Io(String),
}

/// What a session did, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Messages that got a final verdict (at end of message or earlier).
    pub messages: u64,
    /// Messages that ended without a verdict (ABORT, hang-up, timeout).
    pub aborted: u64,
    /// Progress replies sent while the filter worked at end of message.
    pub progress_sent: u64,
    /// Header edits or quarantines dropped because the MTA did not grant the action.
    pub dropped_edits: u64,
    pub end: SessionEnd,
}

impl SessionStats {
    pub fn is_protocol_error(&self) -> bool {
        matches!(self.end, SessionEnd::ProtocolError(_))
    }
}

/// What was agreed at OPTNEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub version: u32,
    pub actions: u32,
    pub protocol: u32,
}

impl Negotiated {
    fn no_reply(&self, bit: u32) -> bool {
        self.protocol & bit != 0
    }

    fn may(&self, action: u32) -> bool {
        self.actions & action != 0
    }
}

/// Works out our OPTNEG answer to an MTA offer. Errors only for a version too old
/// to talk to. Logs what is given up when the offer lacks something we want.
pub fn negotiate(
    offered_version: u32,
    offered_actions: u32,
    offered_protocol: u32,
    requested_macros: &[(u32, String)],
) -> Result<(Negotiated, Reply), String> {
    if offered_version < MIN_VERSION {
        return Err(format!(
            "MTA offers milter protocol version {offered_version}, below {MIN_VERSION}"
        ));
    }
    let version = offered_version.min(PROTOCOL_VERSION);
    if version < PROTOCOL_VERSION {
        warn!(
            offered_version,
            "MTA offers an old milter protocol version; carrying on with it"
        );
    }
    let wants_macros = requested_macros.iter().any(|(_, names)| !names.is_empty());
    let wanted = WANTED_ACTIONS | if wants_macros { actions::SETSYMLIST } else { 0 };
    let granted = wanted & offered_actions;
    let missing = WANTED_ACTIONS & !offered_actions;
    if missing != 0 {
        warn!(
            missing = ?actions::names(missing),
            offered_actions = format_args!("{offered_actions:#x}"),
            "MTA does not offer some actions; the matching header edits or quarantines \
             will be dropped (quarantine falls back to tempfail)"
        );
    }
    if wants_macros && granted & actions::SETSYMLIST == 0 {
        warn!("MTA does not offer SETSYMLIST; its configured macro lists apply");
    }
    let protocol = offered_protocol & (SKIPPED_STEPS | NO_REPLY_STEPS);
    let macros = if granted & actions::SETSYMLIST != 0 {
        requested_macros
            .iter()
            .filter(|(_, names)| !names.is_empty() && !names.contains('\0'))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let negotiated = Negotiated {
        version,
        actions: granted,
        protocol,
    };
    let reply = Reply::OptNeg {
        version,
        actions: granted,
        protocol,
        macros,
    };
    Ok((negotiated, reply))
}

/// Serves one MTA connection until QUIT, hang-up, idle timeout, protocol error,
/// or `shutdown` (honoured between messages only: a message in progress is
/// finished first; the listener enforces any grace period by dropping the task).
///
/// Every way the session can end is reported in [`SessionStats::end`], so this
/// returns stats rather than a `Result`.
pub async fn run_session<S, F>(
    stream: S,
    filter: Arc<F>,
    config: SessionConfig,
    conn_id: u64,
    peer: String,
    shutdown: CancellationToken,
) -> SessionStats
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Filter,
{
    // `mta` is the MTA's connection to the filter (its TCP address, or the unix
    // socket it came in on); the SMTP client is in the verdict line's `client`.
    let span = tracing::info_span!("milter", conn = conn_id, mta = %peer);
    async move {
        let framed = Framed::new(stream, MilterCodec::new(config.max_frame_size));
        let mut session = Session {
            framed,
            filter,
            config,
            conn_id,
            shutdown,
            negotiated: None,
            conn: Arc::new(Connection {
                id: conn_id,
                ..Connection::default()
            }),
            connected: false,
            connect_reply: None,
            staged_macros: Macros::default(),
            current: None,
            stats: SessionStats::default(),
        };
        let end = session.serve().await;
        session.abandon_message();
        match &end {
            SessionEnd::ProtocolError(why) => warn!(%why, "milter protocol error; closing"),
            SessionEnd::Io(why) => warn!(%why, "milter connection I/O error"),
            SessionEnd::IdleTimeout => info!("milter peer idle too long; closing"),
            SessionEnd::WriteTimeout => warn!(
                timeout = ?session.config.write_timeout,
                "milter peer stopped reading our replies; closing"
            ),
            other => debug!(end = ?other, "milter session ended"),
        }
        session.stats.end = end;
        session.stats
    }
    .instrument(span)
    .await
}

/// Where the current message stands.
enum MessageState {
    /// Being assembled; the filter has not decided.
    Open,
    /// An early verdict went out as this reply; later packets are ignored.
    Replied(Reply),
    /// An early verdict that can only be sent at end of message (quarantine).
    Deferred(Verdict),
}

struct Current {
    msg: Message,
    state: MessageState,
    /// The share of the memory budget this message's buffer holds.
    reservation: Reservation,
}

/// What handling one command leads to.
enum Flow {
    Next,
    End(SessionEnd),
}

struct Session<S, F> {
    framed: Framed<S, MilterCodec>,
    filter: Arc<F>,
    config: SessionConfig,
    conn_id: u64,
    shutdown: CancellationToken,
    negotiated: Option<Negotiated>,
    conn: Arc<Connection>,
    connected: bool,
    /// A connect verdict that could not be sent at CONNECT (NR_CONN negotiated):
    /// it answers every MAIL instead.
    connect_reply: Option<Reply>,
    /// Macros for the next message that arrived before its MAIL command.
    staged_macros: Macros,
    current: Option<Current>,
    stats: SessionStats,
}

impl<S, F> Session<S, F>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Filter,
{
    async fn serve(&mut self) -> SessionEnd {
        loop {
            let idle = self.config.idle_timeout;
            let next = if self.current.is_none() {
                tokio::select! {
                    biased;
                    () = self.shutdown.cancelled() => return SessionEnd::Shutdown,
                    next = tokio::time::timeout(idle, self.framed.next()) => next,
                }
            } else {
                tokio::time::timeout(idle, self.framed.next()).await
            };
            let cmd = match next {
                Err(_elapsed) => return SessionEnd::IdleTimeout,
                Ok(None) => return SessionEnd::PeerClosed,
                Ok(Some(Err(e))) => return read_error_end(e),
                Ok(Some(Ok(cmd))) => cmd,
            };
            match self.handle(cmd).await {
                Ok(Flow::Next) => {}
                Ok(Flow::End(end)) => return end,
                Err(e) => return write_error_end(e),
            }
            if self.current.is_none() && self.shutdown.is_cancelled() {
                return SessionEnd::Shutdown;
            }
        }
    }

    async fn handle(&mut self, cmd: Command) -> Result<Flow, CodecError> {
        let Some(neg) = self.negotiated else {
            return match cmd {
                Command::OptNeg {
                    version,
                    actions,
                    protocol,
                } => self.negotiate(version, actions, protocol).await,
                Command::Abort => Ok(Flow::Next),
                Command::Quit => Ok(Flow::End(SessionEnd::Quit)),
                other => Ok(Flow::End(SessionEnd::ProtocolError(format!(
                    "command '{}' before option negotiation",
                    printable(other.code())
                )))),
            };
        };
        match cmd {
            Command::OptNeg {
                version,
                actions,
                protocol,
            } => {
                debug!("renegotiation requested");
                self.reset_connection();
                self.negotiate(version, actions, protocol).await
            }
            Command::Macro { stage, pairs } => {
                self.store_macros(stage, &pairs);
                let held = self.macro_bytes_held();
                let cap = self.config.max_macro_bytes;
                if held > cap {
                    return Ok(Flow::End(SessionEnd::ProtocolError(format!(
                        "macros held by the connection reach {held} bytes, above \
                         [milter] max_macro_bytes ({cap})"
                    ))));
                }
                Ok(Flow::Next)
            }
            Command::Connect { hostname, family } => {
                self.on_connect(hostname, family, neg).await?;
                Ok(Flow::Next)
            }
            Command::Helo(name) => {
                // A new HELO/EHLO resets any transaction (RFC 5321).
                self.abandon_message();
                Arc::make_mut(&mut self.conn).helo = Some(name);
                self.reply_unless(neg, protocol::NR_HELO, Reply::Continue)
                    .await?;
                Ok(Flow::Next)
            }
            Command::Mail { args } => {
                self.on_mail(args, neg).await?;
                Ok(Flow::Next)
            }
            Command::Rcpt { args } => {
                self.on_rcpt(&args);
                self.answer_step(neg, protocol::NR_RCPT).await?;
                Ok(Flow::Next)
            }
            Command::Data => {
                self.current_message();
                self.answer_step(neg, protocol::NR_DATA).await?;
                Ok(Flow::Next)
            }
            Command::Header { name, value } => {
                self.on_header(&name, &value);
                self.answer_step(neg, protocol::NR_HDR).await?;
                Ok(Flow::Next)
            }
            Command::Eoh => {
                let current = self.current_message();
                if matches!(current.state, MessageState::Open) {
                    current.msg.end_headers();
                }
                self.answer_step(neg, protocol::NR_EOH).await?;
                Ok(Flow::Next)
            }
            Command::Body(chunk) => {
                self.on_body(&chunk, neg).await?;
                Ok(Flow::Next)
            }
            Command::Eob => {
                self.on_end_of_message(neg).await?;
                Ok(Flow::Next)
            }
            Command::Unknown(verb) => {
                debug!(?verb, "unknown SMTP command");
                self.reply_unless(neg, protocol::NR_UNKN, Reply::Continue)
                    .await?;
                Ok(Flow::Next)
            }
            Command::Abort => {
                self.abandon_message();
                Ok(Flow::Next)
            }
            Command::Quit => Ok(Flow::End(SessionEnd::Quit)),
            Command::QuitNc => {
                self.reset_connection();
                Ok(Flow::Next)
            }
            Command::Other { code, payload } => Ok(Flow::End(SessionEnd::ProtocolError(format!(
                "unknown command '{}' ({} payload bytes)",
                printable(code),
                payload.len()
            )))),
        }
    }

    async fn negotiate(
        &mut self,
        version: u32,
        offered_actions: u32,
        offered_protocol: u32,
    ) -> Result<Flow, CodecError> {
        match negotiate(
            version,
            offered_actions,
            offered_protocol,
            &self.config.requested_macros,
        ) {
            Ok((negotiated, reply)) => {
                debug!(
                    version = negotiated.version,
                    actions = format_args!("{:#x}", negotiated.actions),
                    protocol = format_args!("{:#x}", negotiated.protocol),
                    "negotiated"
                );
                self.negotiated = Some(negotiated);
                self.send(reply).await?;
                Ok(Flow::Next)
            }
            Err(why) => Ok(Flow::End(SessionEnd::ProtocolError(why))),
        }
    }

    fn store_macros(&mut self, stage: u8, pairs: &[(String, String)]) {
        let target = match stage {
            b'C' | b'H' => &mut Arc::make_mut(&mut self.conn).macros,
            // MAIL macros arrive before MAIL itself, which starts a fresh message.
            b'M' => &mut self.staged_macros,
            _ => match self.current.as_mut() {
                Some(current) => &mut current.msg.macros,
                None => &mut self.staged_macros,
            },
        };
        for (name, value) in pairs {
            target.insert(name, value);
        }
    }

    /// Macro bytes held now: the connection's, those staged for the next message
    /// and the current message's, each counted with [`MACRO_OVERHEAD`].
    fn macro_bytes_held(&self) -> usize {
        fn size(macros: &Macros) -> usize {
            macros
                .iter()
                .map(|(name, value)| name.len() + value.len() + MACRO_OVERHEAD)
                .sum()
        }
        size(&self.conn.macros)
            + size(&self.staged_macros)
            + self.current.as_ref().map_or(0, |c| size(&c.msg.macros))
    }

    /// Keeps a recipient of the open message, unless it is one too many or the
    /// memory budget is full: then the message is refused.
    fn on_rcpt(&mut self, args: &[String]) {
        let cap = self.config.max_recipients;
        let filter = Arc::clone(&self.filter);
        let current = self.current_message();
        if !matches!(current.state, MessageState::Open) {
            return;
        }
        let rcpt = args.first().map(|a| address::bare(a)).unwrap_or_default();
        let refusal = if current.msg.envelope.recipients.len() >= cap {
            Some(filter.over_limit(&current.msg, Limit::Recipients(cap)))
        } else if !current
            .reservation
            .grow(charge(rcpt.len() + RECIPIENT_OVERHEAD))
        {
            Some(filter.over_budget(&current.msg))
        } else {
            current.msg.envelope.recipients.push(rcpt.to_owned());
            None
        };
        if let Some(verdict) = refusal {
            self.refuse(verdict, "rcpt");
        }
    }

    /// Keeps a header field of the open message, unless it is one too many or
    /// the memory budget is full: then the message is refused.
    fn on_header(&mut self, name: &str, value: &str) {
        let cap = self.config.max_headers;
        let filter = Arc::clone(&self.filter);
        let current = self.current_message();
        if !matches!(current.state, MessageState::Open) {
            return;
        }
        let refusal = if current.msg.headers.len() >= cap {
            Some(filter.over_limit(&current.msg, Limit::Headers(cap)))
        } else if !current
            .reservation
            .grow(charge(name.len() + value.len() + HEADER_OVERHEAD))
        {
            Some(filter.over_budget(&current.msg))
        } else {
            current.msg.push_header(name, value);
            None
        };
        if let Some(verdict) = refusal {
            self.refuse(verdict, "header");
        }
    }

    async fn on_connect(
        &mut self,
        hostname: String,
        family: Family,
        neg: Negotiated,
    ) -> Result<(), CodecError> {
        if self.connected {
            debug!("second CONNECT without QUIT_NC; starting over");
            self.abandon_message();
            self.connect_reply = None;
        }
        let conn = Arc::make_mut(&mut self.conn);
        conn.id = self.conn_id;
        conn.hostname = hostname;
        (conn.addr, conn.port) = match family {
            Family::Inet(ip, port) => (Some(ip.into()), port),
            Family::Inet6(ip, port) => (Some(ip.into()), port),
            Family::Unix(_) | Family::Unknown => (None, 0),
        };
        self.connected = true;
        let reply = match self.filter.connect(&self.conn) {
            None => Reply::Continue,
            Some(verdict) => {
                info!(
                    action = verdict.action.as_str(),
                    "connection refused by filter"
                );
                early_reply(&verdict, "connect", &mut self.stats)
            }
        };
        if neg.no_reply(protocol::NR_CONN) {
            if reply != Reply::Continue {
                // No reply may go out now; the verdict answers each MAIL instead.
                self.connect_reply = Some(reply);
            }
            Ok(())
        } else {
            self.send(reply).await
        }
    }

    async fn on_mail(&mut self, args: Vec<String>, neg: Negotiated) -> Result<(), CodecError> {
        // The MAIL-stage macros arrived just before; keep them for the new message.
        let staged = std::mem::take(&mut self.staged_macros);
        self.abandon_message();
        let mut msg = Message {
            connection: Arc::clone(&self.conn),
            macros: staged,
            ..Message::default()
        };
        let mut args = args.into_iter();
        msg.envelope.sender = args
            .next()
            .map(|a| address::bare(&a).to_owned())
            .unwrap_or_default();
        msg.envelope.sender_params = args.collect();
        let (state, reply) = if let Some(reply) = self.connect_reply.clone() {
            self.stats.messages += 1;
            (MessageState::Replied(reply.clone()), reply)
        } else {
            match self.filter.mail(&msg) {
                None => (MessageState::Open, Reply::Continue),
                Some(verdict) => self.early_state(verdict, "mail"),
            }
        };
        self.current = Some(Current {
            msg,
            state,
            reservation: Reservation::new(self.config.memory_budget.clone()),
        });
        self.reply_unless(neg, protocol::NR_MAIL, reply).await
    }

    async fn on_body(&mut self, chunk: &[u8], neg: Negotiated) -> Result<(), CodecError> {
        let filter = Arc::clone(&self.filter);
        let current = self.current_message();
        let refusal = match &current.state {
            MessageState::Replied(_) | MessageState::Deferred(_) => None,
            MessageState::Open => match filter.body_chunk(&current.msg, chunk.len()) {
                None if current.reservation.grow(charge(chunk.len())) => {
                    current.msg.push_body(chunk);
                    None
                }
                None => Some(filter.over_budget(&current.msg)),
                Some(verdict) => Some(verdict),
            },
        };
        if let Some(verdict) = refusal {
            self.refuse(verdict, "body");
        }
        // Under NR_BODY the message's state holds any refusal; EOM answers with it.
        self.answer_step(neg, protocol::NR_BODY).await
    }

    async fn on_end_of_message(&mut self, neg: Negotiated) -> Result<(), CodecError> {
        self.current_message();
        // The reservation lives until the decision is made: the buffer is in
        // memory until then.
        let Some(Current {
            msg,
            state,
            reservation: _held,
        }) = self.current.take()
        else {
            return Ok(());
        };
        self.staged_macros = Macros::default();
        let replies = match state {
            MessageState::Replied(reply) => vec![reply],
            MessageState::Deferred(verdict) => {
                self.stats.messages += 1;
                final_replies(&verdict, neg, &mut self.stats)
            }
            MessageState::Open => {
                let queue_id = msg.queue_id().unwrap_or("").to_owned();
                let verdict = self.decide(msg).await?;
                self.stats.messages += 1;
                debug!(
                    queue_id = %queue_id,
                    action = verdict.action.as_str(),
                    "message decided"
                );
                final_replies(&verdict, neg, &mut self.stats)
            }
        };
        let limit = self.config.write_timeout;
        let framed = &mut self.framed;
        let sent = tokio::time::timeout(limit, async move {
            for reply in replies {
                framed.feed(reply).await?;
            }
            framed.flush().await
        })
        .await;
        sent.unwrap_or_else(|_| Err(write_timed_out(limit)))
    }

    /// Runs the filter's end-of-message decision, keeping the MTA patient with
    /// progress replies.
    async fn decide(&mut self, msg: Message) -> Result<Verdict, CodecError> {
        let decision = self.filter.end_of_message(msg);
        let mut decision = std::pin::pin!(decision);
        let every = self.config.progress_interval;
        if every.is_zero() {
            return Ok(decision.await);
        }
        let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                verdict = &mut decision => return Ok(verdict),
                _ = ticker.tick() => {
                    self.send(Reply::Progress).await?;
                    self.stats.progress_sent += 1;
                }
            }
        }
    }

    /// The reply to an early verdict and the state the message is left in.
    fn early_state(&mut self, verdict: Verdict, stage: &str) -> (MessageState, Reply) {
        if verdict.action == Action::Quarantine {
            debug!(stage, "quarantine decided early; applied at end of message");
            return (MessageState::Deferred(verdict), Reply::Continue);
        }
        debug!(stage, action = verdict.action.as_str(), "early verdict");
        self.stats.messages += 1;
        let reply = early_reply(&verdict, stage, &mut self.stats);
        (MessageState::Replied(reply.clone()), reply)
    }

    /// Ends the open message with an early verdict: everything it holds (buffer,
    /// header fields, recipients) is freed and given back to the budget, and the
    /// reply (or the quarantine, for end of message) is kept in its state.
    fn refuse(&mut self, verdict: Verdict, stage: &str) {
        let (state, _reply) = self.early_state(verdict, stage);
        if let Some(current) = self.current.as_mut() {
            current.msg.raw = bytes::BytesMut::new();
            current.msg.headers = Vec::new();
            current.msg.envelope.recipients = Vec::new();
            current.reservation.release();
            current.state = state;
        }
    }

    /// Answers a step of the message unless the MTA asked for no reply there: a
    /// refusal already decided is repeated (Postfix stops sending after one; an
    /// MTA that does not gets the same answer again), else CONTINUE.
    async fn answer_step(&mut self, neg: Negotiated, no_reply_bit: u32) -> Result<(), CodecError> {
        if neg.no_reply(no_reply_bit) {
            return Ok(());
        }
        let reply = match self.current.as_ref().map(|c| &c.state) {
            Some(MessageState::Replied(reply)) => reply.clone(),
            _ => Reply::Continue,
        };
        self.send(reply).await
    }

    /// Sends one reply; a peer that does not take it within the write timeout
    /// has stopped reading.
    async fn send(&mut self, reply: Reply) -> Result<(), CodecError> {
        let limit = self.config.write_timeout;
        tokio::time::timeout(limit, self.framed.send(reply))
            .await
            .unwrap_or_else(|_| Err(write_timed_out(limit)))
    }

    /// The message in progress; one is started if the MTA skipped MAIL.
    fn current_message(&mut self) -> &mut Current {
        let conn = &self.conn;
        let staged = &mut self.staged_macros;
        let budget = self.config.memory_budget.clone();
        self.current.get_or_insert_with(|| {
            debug!("message content without MAIL; starting a message");
            Current {
                msg: Message {
                    connection: Arc::clone(conn),
                    macros: std::mem::take(staged),
                    ..Message::default()
                },
                state: MessageState::Open,
                reservation: Reservation::new(budget),
            }
        })
    }

    /// Drops the message in progress, telling the filter if it had not decided.
    fn abandon_message(&mut self) {
        self.staged_macros = Macros::default();
        if let Some(current) = self.current.take() {
            match current.state {
                MessageState::Open | MessageState::Deferred(_) => {
                    debug!("message aborted");
                    self.stats.aborted += 1;
                    self.filter.aborted(&current.msg);
                }
                MessageState::Replied(_) => {}
            }
        }
    }

    /// Back to the state before CONNECT (QUIT_NC); the negotiation stands.
    fn reset_connection(&mut self) {
        self.abandon_message();
        self.conn = Arc::new(Connection {
            id: self.conn_id,
            ..Connection::default()
        });
        self.connected = false;
        self.connect_reply = None;
    }

    async fn reply_unless(
        &mut self,
        neg: Negotiated,
        no_reply_bit: u32,
        reply: Reply,
    ) -> Result<(), CodecError> {
        if neg.no_reply(no_reply_bit) {
            if reply != Reply::Continue {
                // Only MAIL verdicts get here, and we never ask for NR_MAIL; a
                // reply now would desynchronise the stream.
                warn!(?reply, "verdict cannot be sent: MTA expects no reply here");
            }
            return Ok(());
        }
        self.send(reply).await
    }
}

/// The error a write that timed out ends the session with.
fn write_timed_out(limit: Duration) -> CodecError {
    CodecError::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("the peer took no reply for {limit:?}"),
    ))
}

fn read_error_end(e: CodecError) -> SessionEnd {
    match e {
        CodecError::Truncated { buffered } => {
            debug!(buffered, "peer closed inside a frame");
            SessionEnd::PeerClosed
        }
        CodecError::Io(e) if is_hang_up(&e) => SessionEnd::PeerClosed,
        CodecError::Io(e) => SessionEnd::Io(e.to_string()),
        other => SessionEnd::ProtocolError(other.to_string()),
    }
}

fn write_error_end(e: CodecError) -> SessionEnd {
    match e {
        CodecError::Io(e) if e.kind() == io::ErrorKind::TimedOut => SessionEnd::WriteTimeout,
        CodecError::Io(e) if is_hang_up(&e) => SessionEnd::PeerClosed,
        CodecError::Io(e) => SessionEnd::Io(e.to_string()),
        // Replies are validated before sending; reaching this is a bug here.
        other => {
            error!(error = %other, "could not encode a reply");
            SessionEnd::Io(other.to_string())
        }
    }
}

fn is_hang_up(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

fn printable(code: u8) -> String {
    if code.is_ascii_graphic() {
        char::from(code).to_string()
    } else {
        format!("\\x{code:02x}")
    }
}

/// The reply for a verdict given before end of message (no edits possible).
fn early_reply(verdict: &Verdict, stage: &str, stats: &mut SessionStats) -> Reply {
    match verdict.action {
        Action::Accept => {
            if !verdict.headers.is_empty() {
                warn!(
                    stage,
                    "header edits of an early accept are dropped (edits only at end of message)"
                );
                stats.dropped_edits += verdict.headers.len() as u64;
            }
            Reply::Accept
        }
        Action::Discard => Reply::Discard,
        Action::Reject => refusal(verdict.reply.as_ref(), 5, Reply::Reject),
        Action::Tempfail => refusal(verdict.reply.as_ref(), 4, Reply::Tempfail),
        Action::Quarantine => {
            // Quarantine only exists at end of message; hold nothing, lose nothing.
            warn!(
                stage,
                "quarantine cannot be applied here; tempfailing instead"
            );
            stats.dropped_edits += 1;
            Reply::Tempfail
        }
    }
}

/// A REJECT/TEMPFAIL, with the filter's SMTP text when it is one the MTA accepts.
fn refusal(reply: Option<&SmtpReply>, class: u16, plain: Reply) -> Reply {
    let Some(reply) = reply else {
        return plain;
    };
    if !reply_fits_class(reply, class) {
        warn!(
            code = reply.code,
            enhanced = %reply.enhanced,
            class,
            "SMTP reply does not match the verdict; sending the plain one"
        );
        return plain;
    }
    let text = Reply::ReplyCode(reply.render());
    if text.payload_len() > MAX_REPLY_PAYLOAD {
        warn!("SMTP reply text too long; sending the plain one");
        return plain;
    }
    text
}

/// Postfix checks the first line: code class 4 or 5, and an enhanced status code
/// of the same class.
fn reply_fits_class(reply: &SmtpReply, class: u16) -> bool {
    if reply.code / 100 != class {
        return false;
    }
    if reply.enhanced.is_empty() {
        return true;
    }
    let mut parts = reply.enhanced.split('.');
    let first_ok = parts.next() == Some(&class.to_string()[..]);
    let rest: Vec<&str> = parts.collect();
    first_ok
        && rest.len() == 2
        && rest
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The packets that answer end of message: allowed header edits, then the final
/// reply (a quarantine is the `q` packet followed by ACCEPT).
pub fn final_replies(verdict: &Verdict, neg: Negotiated, stats: &mut SessionStats) -> Vec<Reply> {
    let mut out = Vec::new();
    match verdict.action {
        Action::Accept => {
            out.extend(header_edits(&verdict.headers, neg, stats));
            out.push(Reply::Accept);
        }
        Action::Quarantine => {
            if neg.may(actions::QUARANTINE) {
                out.extend(header_edits(&verdict.headers, neg, stats));
                out.push(Reply::Quarantine(quarantine_reason(verdict)));
                out.push(Reply::Accept);
            } else {
                // Holding was the intent; delivering unseen would defeat it and
                // rejecting would lose the mail. A tempfail keeps it at the sender.
                error!("quarantine not granted by the MTA; tempfailing the message");
                stats.dropped_edits += 1;
                out.push(Reply::Tempfail);
            }
        }
        Action::Discard => out.push(Reply::Discard),
        Action::Reject => out.push(refusal(verdict.reply.as_ref(), 5, Reply::Reject)),
        Action::Tempfail => out.push(refusal(verdict.reply.as_ref(), 4, Reply::Tempfail)),
    }
    out
}

fn header_edits(edits: &[HeaderEdit], neg: Negotiated, stats: &mut SessionStats) -> Vec<Reply> {
    let mut out = Vec::new();
    for edit in edits {
        let (needed, reply) = match edit {
            HeaderEdit::Add { name, value } => (
                actions::ADDHDRS,
                Reply::AddHeader {
                    name: name.clone(),
                    value: fold_value(value),
                },
            ),
            HeaderEdit::Insert { index, name, value } => (
                actions::ADDHDRS,
                Reply::InsertHeader {
                    index: *index,
                    name: name.clone(),
                    value: fold_value(value),
                },
            ),
            HeaderEdit::Change { name, index, value } => (
                actions::CHGHDRS,
                Reply::ChangeHeader {
                    index: *index,
                    name: name.clone(),
                    value: fold_value(value),
                },
            ),
            HeaderEdit::Delete { name, index } => (
                actions::CHGHDRS,
                Reply::ChangeHeader {
                    index: *index,
                    name: name.clone(),
                    value: String::new(),
                },
            ),
        };
        if !neg.may(needed) {
            warn!(?edit, "header edit dropped: MTA did not grant the action");
            stats.dropped_edits += 1;
            continue;
        }
        let name_ok = match &reply {
            Reply::AddHeader { name, .. }
            | Reply::InsertHeader { name, .. }
            | Reply::ChangeHeader { name, .. } => valid_header_name(name),
            _ => false,
        };
        if !name_ok || reply.payload_len() > MAX_REPLY_PAYLOAD {
            warn!(?edit, "header edit dropped: bad name or too long");
            stats.dropped_edits += 1;
            continue;
        }
        out.push(reply);
    }
    out
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// Makes a header value safe to send: folds as `\n` + whitespace (what Postfix
/// expects), every continuation line indented, no NUL or stray CR.
fn fold_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, line) in value.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if i > 0 {
            out.push('\n');
            if !line.starts_with([' ', '\t']) {
                out.push('\t');
            }
        }
        out.extend(line.chars().filter(|&c| c != '\0' && c != '\r'));
    }
    out
}

fn quarantine_reason(verdict: &Verdict) -> String {
    let mut reason: String = verdict
        .reasons
        .iter()
        .map(|r| format!("{} ({})", r.rule, r.article))
        .collect::<Vec<_>>()
        .join("; ")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if reason.trim().is_empty() {
        reason = "held by congvu-milter policy".to_owned();
    }
    if reason.len() > MAX_QUARANTINE_REASON {
        let mut cut = MAX_QUARANTINE_REASON;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Reason;

    const ALL: Negotiated = Negotiated {
        version: 6,
        actions: 0x1FF,
        protocol: 0,
    };

    fn verdict(action: Action) -> Verdict {
        Verdict {
            action,
            ..Verdict::accept()
        }
    }

    #[test]
    fn negotiates_postfix_offer() {
        let (neg, reply) =
            negotiate(6, 0x1FF, 0x1F_FFFF, &SessionConfig::default_macros()).unwrap();
        assert_eq!(neg.version, 6);
        assert_eq!(
            neg.actions,
            actions::ADDHDRS | actions::CHGHDRS | actions::QUARANTINE | actions::SETSYMLIST
        );
        assert_eq!(neg.protocol, SKIPPED_STEPS | NO_REPLY_STEPS);
        assert_eq!(neg.protocol & protocol::NR_MAIL, 0);
        assert_ne!(neg.protocol & protocol::NR_BODY, 0);
        assert_eq!(neg.protocol & (protocol::NOHDRS | protocol::NOBODY), 0);
        let Reply::OptNeg { macros, .. } = reply else {
            panic!("not an OPTNEG reply");
        };
        assert_eq!(macros, SessionConfig::default_macros());
    }

    #[test]
    fn negotiates_subsets_of_a_reduced_offer() {
        let (neg, reply) = negotiate(6, 0x01, 0, &SessionConfig::default_macros()).unwrap();
        assert_eq!(neg.actions, actions::ADDHDRS);
        assert_eq!(neg.protocol, 0);
        assert!(matches!(reply, Reply::OptNeg { macros, .. } if macros.is_empty()));
    }

    #[test]
    fn never_answers_above_the_offered_version() {
        assert_eq!(negotiate(7, 0x1FF, 0, &[]).unwrap().0.version, 6);
        assert_eq!(negotiate(4, 0x1FF, 0, &[]).unwrap().0.version, 4);
        assert!(negotiate(1, 0x1FF, 0, &[]).is_err());
    }

    #[test]
    fn accept_sends_allowed_edits_then_accept() {
        let mut v = verdict(Action::Accept);
        v.headers = vec![
            HeaderEdit::Add {
                name: "X-Scanned".into(),
                value: "one\r\ntwo".into(),
            },
            HeaderEdit::Delete {
                name: "X-Bad".into(),
                index: 1,
            },
            HeaderEdit::Add {
                name: "Bad Name".into(),
                value: "x".into(),
            },
        ];
        let mut stats = SessionStats::default();
        let out = final_replies(&v, ALL, &mut stats);
        assert_eq!(
            out,
            vec![
                Reply::AddHeader {
                    name: "X-Scanned".into(),
                    value: "one\n\ttwo".into()
                },
                Reply::ChangeHeader {
                    index: 1,
                    name: "X-Bad".into(),
                    value: String::new()
                },
                Reply::Accept
            ]
        );
        assert_eq!(stats.dropped_edits, 1);
        let only_add = Negotiated {
            actions: actions::ADDHDRS,
            ..ALL
        };
        let out = final_replies(&v, only_add, &mut stats);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(stats.dropped_edits, 3);
    }

    #[test]
    fn quarantine_needs_the_action_else_tempfails() {
        let mut v = verdict(Action::Quarantine);
        v.reasons.push(Reason {
            rule: "executable".into(),
            article: "Điều 4 khoản 7".into(),
            detail: String::new(),
            path: Vec::new(),
        });
        let mut stats = SessionStats::default();
        assert_eq!(
            final_replies(&v, ALL, &mut stats),
            vec![
                Reply::Quarantine("executable (Điều 4 khoản 7)".into()),
                Reply::Accept
            ]
        );
        let no_q = Negotiated {
            actions: actions::ADDHDRS,
            ..ALL
        };
        assert_eq!(final_replies(&v, no_q, &mut stats), vec![Reply::Tempfail]);
    }

    #[test]
    fn refusals_use_the_smtp_text_only_when_valid() {
        let mut stats = SessionStats::default();
        let mut v = verdict(Action::Reject);
        assert_eq!(final_replies(&v, ALL, &mut stats), vec![Reply::Reject]);
        v.reply = Some(SmtpReply::new(550, "5.7.1", "no 100% way"));
        assert_eq!(
            final_replies(&v, ALL, &mut stats),
            vec![Reply::ReplyCode("550 5.7.1 no 100% way".into())]
        );
        v.reply = Some(SmtpReply::new(451, "4.7.1", "wrong class"));
        assert_eq!(final_replies(&v, ALL, &mut stats), vec![Reply::Reject]);
        v.reply = Some(SmtpReply::new(550, "4.7.1", "mismatch"));
        assert_eq!(final_replies(&v, ALL, &mut stats), vec![Reply::Reject]);
        let t = Verdict::tempfail("clamav", "down");
        assert!(matches!(
            &final_replies(&t, ALL, &mut stats)[..],
            [Reply::ReplyCode(text)] if text.starts_with("451 4.7.1 ")
        ));
        v.reply = Some(SmtpReply::new(550, "5.7.1", "x".repeat(70_000)));
        assert_eq!(final_replies(&v, ALL, &mut stats), vec![Reply::Reject]);
    }

    #[test]
    fn discard_and_early_quarantine() {
        let mut stats = SessionStats::default();
        assert_eq!(
            final_replies(&verdict(Action::Discard), ALL, &mut stats),
            vec![Reply::Discard]
        );
        assert_eq!(
            early_reply(&verdict(Action::Quarantine), "connect", &mut stats),
            Reply::Tempfail
        );
    }

    #[test]
    fn quarantine_reason_is_bounded_and_clean() {
        let mut v = verdict(Action::Quarantine);
        assert_eq!(quarantine_reason(&v), "held by congvu-milter policy");
        v.reasons.push(Reason {
            rule: "ễ".repeat(600),
            article: "a\nb".into(),
            detail: String::new(),
            path: Vec::new(),
        });
        let r = quarantine_reason(&v);
        assert!(r.len() <= MAX_QUARANTINE_REASON);
        assert!(!r.contains('\n'));
    }
}
