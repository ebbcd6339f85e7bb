//! The MTA side of the milter protocol: [`MilterClient`] speaks to a milter the
//! way Postfix 3.7 does, over TCP, a unix socket or any in-memory stream.
//!
//! Used by the integration tests and by the load generator. It honours what the
//! milter negotiated: it never waits for a reply the milter was allowed to omit
//! (`NR_*`), and it does not send steps the milter asked to skip (`NO*`), like a
//! real MTA. Every read and write is bounded by a timeout (default 30 s, Postfix's
//! `milter_command_timeout`); a progress reply restarts it, as in Postfix.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_util::codec::Framed;

use super::codec::{
    CodecError, Command, DEFAULT_MAX_FRAME, Family, MAX_REPLY_PAYLOAD, MtaCodec, Reply, actions,
    protocol,
};
use crate::message::Envelope;
pub use crate::message::split_message;

/// Default timeout for each read and write.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What the MTA offers at OPTNEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub version: u32,
    pub actions: u32,
    pub protocol: u32,
}

impl Offer {
    /// Postfix 3.7 with `milter_protocol = 6` (the default), as captured live.
    pub const POSTFIX_3_7: Offer = Offer {
        version: 6,
        actions: 0x1FF,
        protocol: 0x1F_FFFF,
    };
    /// Sendmail 8.17: the same numbers as Postfix.
    pub const SENDMAIL_8_17: Offer = Offer {
        version: 6,
        actions: 0x1FF,
        protocol: 0x1F_FFFF,
    };
    /// A stingy MTA: only ADDHDRS, no protocol extensions (so every step gets a
    /// reply and nothing can be skipped).
    pub const REDUCED: Offer = Offer {
        version: 6,
        actions: actions::ADDHDRS,
        protocol: 0,
    };
}

/// The milter's OPTNEG answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub version: u32,
    pub actions: u32,
    pub protocol: u32,
    /// Requested macro lists by `SMFIM_*` stage.
    pub macros: Vec<(u32, String)>,
}

impl Negotiated {
    /// The milter sends no reply for the step guarded by this `NR_*` bit.
    pub fn no_reply(&self, nr_bit: u32) -> bool {
        self.protocol & nr_bit != 0
    }

    /// The milter asked not to receive the step guarded by this `NO*` bit.
    pub fn skips(&self, no_bit: u32) -> bool {
        self.protocol & no_bit != 0
    }

    /// The macro list the milter requested for a `SMFIM_*` stage.
    pub fn macro_list(&self, stage: u32) -> Option<&str> {
        self.macros
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, names)| names.as_str())
    }
}

/// Why a client operation failed.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("protocol error: {0}")]
    Codec(#[from] CodecError),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("milter closed the connection while {0}")]
    Closed(&'static str),
    #[error("unexpected reply {reply:?} {context}")]
    UnexpectedReply { context: &'static str, reply: Reply },
    #[error("milter answered OPTNEG beyond the offer: {0}")]
    BadNegotiation(String),
    #[error("OPTNEG has not been done yet")]
    NotNegotiated,
}

/// Everything that came back for end of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EomOutcome {
    /// Edits and quarantine requests, in the order received.
    pub edits: Vec<Reply>,
    /// The final reply (accept, continue, reject, tempfail, discard, reply code...).
    pub reply: Reply,
    /// Progress replies seen while waiting.
    pub progress: u32,
}

/// The step at which the milter decided a message in [`MilterClient::send_message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Mail,
    Rcpt,
    Data,
    Header,
    Eoh,
    Body,
    Eom,
}

/// The result of [`MilterClient::send_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageOutcome {
    pub stage: Stage,
    /// The deciding reply (for RCPT: the last refusal, when every recipient was
    /// refused).
    pub reply: Reply,
    /// Edits; only filled at end of message.
    pub edits: Vec<Reply>,
    pub progress: u32,
    /// Recipients the milter refused at RCPT (the message went on without them).
    pub refused_recipients: Vec<String>,
}

/// Macros to send before each step of [`MilterClient::send_message`], by command
/// code (`b'M'`, `b'R'`, `b'T'`, `b'L'`, `b'N'`, `b'B'`, `b'E'`). Names as on the
/// wire: `i` bare, long names in braces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageMacros(Vec<(u8, Vec<(String, String)>)>);

impl StageMacros {
    pub fn new() -> Self {
        StageMacros::default()
    }

    /// Adds one macro for a stage.
    pub fn with(mut self, stage: u8, name: &str, value: &str) -> Self {
        let pair = (name.to_owned(), value.to_owned());
        match self.0.iter_mut().find(|(s, _)| *s == stage) {
            Some((_, pairs)) => pairs.push(pair),
            None => self.0.push((stage, vec![pair])),
        }
        self
    }

    pub fn get(&self, stage: u8) -> &[(String, String)] {
        self.0
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, pairs)| pairs.as_slice())
            .unwrap_or(&[])
    }
}

/// Plays the MTA towards one milter connection.
pub struct MilterClient<S> {
    framed: Framed<S, MtaCodec>,
    negotiated: Option<Negotiated>,
    timeout: Duration,
    /// Time from sending the last EOB to its final reply.
    last_eom: Option<Duration>,
    /// Inside [`MilterClient::send_message`]: commands are buffered and written
    /// when a reply is awaited (or the next command flushes), as Postfix's
    /// buffered stream does. One write per reply awaited also keeps Nagle's
    /// algorithm and delayed ACKs from adding 40 ms stalls to a command that
    /// follows an unanswered one (MACRO then EOB, ABORT then MAIL).
    batching: bool,
}

impl MilterClient<TcpStream> {
    /// Connects to `host:port`.
    pub async fn connect_tcp(addr: &str, timeout: Duration) -> Result<Self, ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout("connecting"))??;
        Ok(MilterClient::new(stream).with_timeout(timeout))
    }
}

impl MilterClient<UnixStream> {
    /// Connects to a unix socket.
    pub async fn connect_unix(
        path: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let stream = tokio::time::timeout(timeout, UnixStream::connect(path))
            .await
            .map_err(|_| ClientError::Timeout("connecting"))??;
        Ok(MilterClient::new(stream).with_timeout(timeout))
    }
}

impl<S> MilterClient<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    pub fn new(stream: S) -> Self {
        MilterClient {
            framed: Framed::new(stream, MtaCodec::new(DEFAULT_MAX_FRAME)),
            negotiated: None,
            timeout: DEFAULT_TIMEOUT,
            last_eom: None,
            batching: false,
        }
    }

    /// Sets the timeout for each read and write.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What the milter answered at OPTNEG, once done.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// OPTNEG. Fails, like Postfix, if the milter answers a higher version or
    /// actions that were not offered.
    pub async fn negotiate(&mut self, offer: Offer) -> Result<Negotiated, ClientError> {
        self.send_command(Command::OptNeg {
            version: offer.version,
            actions: offer.actions,
            protocol: offer.protocol,
        })
        .await?;
        match self.read_reply("negotiating").await? {
            Reply::OptNeg {
                version,
                actions,
                protocol,
                macros,
            } => {
                if version > offer.version || version == 0 {
                    return Err(ClientError::BadNegotiation(format!(
                        "version {version} for an offer of {}",
                        offer.version
                    )));
                }
                if actions & !offer.actions != 0 {
                    return Err(ClientError::BadNegotiation(format!(
                        "actions {actions:#x} for an offer of {:#x}",
                        offer.actions
                    )));
                }
                if protocol & !offer.protocol != 0 {
                    return Err(ClientError::BadNegotiation(format!(
                        "protocol {protocol:#x} for an offer of {:#x}",
                        offer.protocol
                    )));
                }
                let negotiated = Negotiated {
                    version,
                    actions,
                    protocol,
                    macros,
                };
                self.negotiated = Some(negotiated.clone());
                Ok(negotiated)
            }
            reply => Err(ClientError::UnexpectedReply {
                context: "to OPTNEG",
                reply,
            }),
        }
    }

    /// Sends a MACRO packet for the command with code `stage` (`b'C'`, `b'M'`...).
    pub async fn macros(&mut self, stage: u8, pairs: &[(&str, &str)]) -> Result<(), ClientError> {
        self.send_command(Command::Macro {
            stage,
            pairs: pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        })
        .await
    }

    /// CONNECT. `None` means no reply was expected (NR_CONN) or the step is
    /// skipped (NOCONNECT); the same holds for the other steps below.
    pub async fn connect(
        &mut self,
        hostname: &str,
        family: Family,
    ) -> Result<Option<Reply>, ClientError> {
        self.step(
            Command::Connect {
                hostname: hostname.to_owned(),
                family,
            },
            protocol::NOCONNECT,
            protocol::NR_CONN,
        )
        .await
    }

    pub async fn helo(&mut self, name: &str) -> Result<Option<Reply>, ClientError> {
        self.step(
            Command::Helo(name.to_owned()),
            protocol::NOHELO,
            protocol::NR_HELO,
        )
        .await
    }

    /// MAIL FROM: the address token verbatim (`<a@x>`), then ESMTP parameters.
    pub async fn mail(&mut self, args: &[&str]) -> Result<Option<Reply>, ClientError> {
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        self.step(Command::Mail { args }, protocol::NOMAIL, protocol::NR_MAIL)
            .await
    }

    pub async fn rcpt(&mut self, args: &[&str]) -> Result<Option<Reply>, ClientError> {
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        self.step(Command::Rcpt { args }, protocol::NORCPT, protocol::NR_RCPT)
            .await
    }

    pub async fn data(&mut self) -> Result<Option<Reply>, ClientError> {
        self.step(Command::Data, protocol::NODATA, protocol::NR_DATA)
            .await
    }

    /// One header; fold a value with `\n` plus whitespace, as Postfix does.
    pub async fn header(&mut self, name: &str, value: &str) -> Result<Option<Reply>, ClientError> {
        self.step(
            Command::Header {
                name: name.to_owned(),
                value: value.to_owned(),
            },
            protocol::NOHDRS,
            protocol::NR_HDR,
        )
        .await
    }

    pub async fn eoh(&mut self) -> Result<Option<Reply>, ClientError> {
        self.step(Command::Eoh, protocol::NOEOH, protocol::NR_EOH)
            .await
    }

    /// Sends the body in chunks of 65535 bytes. Stops at the first reply other
    /// than CONTINUE and returns it (SKIP included: the caller goes on to EOM);
    /// `None` when every chunk was accepted or no replies were expected.
    pub async fn body(&mut self, body: &[u8]) -> Result<Option<Reply>, ClientError> {
        for chunk in body.chunks(MAX_REPLY_PAYLOAD) {
            match self.body_chunk(chunk).await? {
                None | Some(Reply::Continue) => {}
                Some(other) => return Ok(Some(other)),
            }
        }
        Ok(None)
    }

    /// Sends one BODY packet as is.
    pub async fn body_chunk(&mut self, chunk: &[u8]) -> Result<Option<Reply>, ClientError> {
        self.step(
            Command::Body(Bytes::copy_from_slice(chunk)),
            protocol::NOBODY,
            protocol::NR_BODY,
        )
        .await
    }

    /// An SMTP command the MTA does not know (Postfix sends only the verb).
    pub async fn unknown(&mut self, verb: &str) -> Result<Option<Reply>, ClientError> {
        self.step(
            Command::Unknown(verb.to_owned()),
            protocol::NOUNKNOWN,
            protocol::NR_UNKN,
        )
        .await
    }

    /// How long the milter took to decide the last message that reached end of
    /// message: from sending EOB to reading the final reply (for the load
    /// generator). `None` until then, and after a message decided earlier.
    pub fn last_eom_latency(&self) -> Option<Duration> {
        self.last_eom
    }

    /// End of message: collects edits and progress replies until the final reply.
    pub async fn eom(&mut self) -> Result<EomOutcome, ClientError> {
        self.last_eom = None;
        let started = Instant::now();
        self.send_command(Command::Eob).await?;
        let mut edits = Vec::new();
        let mut progress = 0;
        loop {
            match self
                .read_any("waiting for the end-of-message reply")
                .await?
            {
                Reply::Progress => progress += 1,
                edit if edit.is_eom_intermediate() => edits.push(edit),
                reply @ (Reply::Continue
                | Reply::Accept
                | Reply::Reject
                | Reply::Tempfail
                | Reply::Discard
                | Reply::Shutdown
                | Reply::ReplyCode(_)) => {
                    self.last_eom = Some(started.elapsed());
                    return Ok(EomOutcome {
                        edits,
                        reply,
                        progress,
                    });
                }
                reply => {
                    return Err(ClientError::UnexpectedReply {
                        context: "at end of message",
                        reply,
                    });
                }
            }
        }
    }

    /// ABORT: ends the current transaction; no reply.
    pub async fn abort(&mut self) -> Result<(), ClientError> {
        self.send_command(Command::Abort).await
    }

    /// QUIT, then closes the connection.
    pub async fn quit(mut self) -> Result<(), ClientError> {
        self.send_command(Command::Quit).await?;
        let mut stream = self.framed.into_inner();
        // The milter may have closed first; that is fine after QUIT.
        let _ = tokio::time::timeout(self.timeout, stream.shutdown()).await;
        Ok(())
    }

    /// Sends one message the way Postfix does: MAIL, each RCPT, DATA, each header,
    /// EOH, the body in 65535-byte chunks, EOM, then ABORT (Postfix sends it after
    /// every transaction). `eml` is split with [`split_message`]. Stops at the
    /// first verdict.
    pub async fn send_message(
        &mut self,
        envelope: &Envelope,
        eml: &[u8],
        macros: &StageMacros,
    ) -> Result<MessageOutcome, ClientError> {
        let neg = self.negotiated.clone().ok_or(ClientError::NotNegotiated)?;
        self.last_eom = None;
        self.batching = true;
        let outcome = self.transaction(&neg, envelope, eml, macros).await;
        // ABORT stays buffered like Postfix's: the next command or read sends it.
        let abort = match &outcome {
            Ok(_) => self.abort().await,
            Err(_) => Ok(()),
        };
        self.batching = false;
        let outcome = outcome?;
        abort?;
        Ok(outcome)
    }

    async fn transaction(
        &mut self,
        neg: &Negotiated,
        envelope: &Envelope,
        eml: &[u8],
        macros: &StageMacros,
    ) -> Result<MessageOutcome, ClientError> {
        let decided = |stage, reply| MessageOutcome {
            stage,
            reply,
            edits: Vec::new(),
            progress: 0,
            refused_recipients: Vec::new(),
        };

        self.send_stage_macros(b'M', macros).await?;
        let mut mail_args = vec![format!("<{}>", envelope.sender)];
        mail_args.extend(envelope.sender_params.iter().cloned());
        let args: Vec<&str> = mail_args.iter().map(String::as_str).collect();
        let reply = self.mail(&args).await?;
        if let Some(reply) = verdict_of(reply) {
            return Ok(decided(Stage::Mail, reply));
        }

        let mut refused = Vec::new();
        let mut last_refusal = None;
        for rcpt in &envelope.recipients {
            self.send_stage_macros(b'R', macros).await?;
            let token = format!("<{rcpt}>");
            match self.rcpt(&[&token]).await? {
                None | Some(Reply::Continue) => {}
                Some(r @ (Reply::Reject | Reply::Tempfail | Reply::ReplyCode(_))) => {
                    refused.push(rcpt.clone());
                    last_refusal = Some(r);
                }
                Some(other) => {
                    let mut outcome = decided(Stage::Rcpt, other);
                    outcome.refused_recipients = refused;
                    return Ok(outcome);
                }
            }
        }
        if !envelope.recipients.is_empty() && refused.len() == envelope.recipients.len() {
            let reply = last_refusal.unwrap_or(Reply::Reject);
            let mut outcome = decided(Stage::Rcpt, reply);
            outcome.refused_recipients = refused;
            return Ok(outcome);
        }

        self.send_stage_macros(b'T', macros).await?;
        let reply = self.data().await?;
        if let Some(reply) = verdict_of(reply) {
            return Ok(decided(Stage::Data, reply));
        }

        let (headers, body) = split_message(eml, neg.protocol & protocol::HDR_LEADSPC != 0);
        if !neg.skips(protocol::NOHDRS) {
            for (name, value) in &headers {
                self.send_stage_macros(b'L', macros).await?;
                let reply = self.header(name, value).await?;
                if let Some(reply) = verdict_of(reply) {
                    return Ok(decided(Stage::Header, reply));
                }
            }
        }
        if !neg.skips(protocol::NOEOH) {
            self.send_stage_macros(b'N', macros).await?;
            let reply = self.eoh().await?;
            if let Some(reply) = verdict_of(reply) {
                return Ok(decided(Stage::Eoh, reply));
            }
        }
        if !neg.skips(protocol::NOBODY) {
            for chunk in body.chunks(MAX_REPLY_PAYLOAD) {
                self.send_stage_macros(b'B', macros).await?;
                match self.body_chunk(chunk).await? {
                    None | Some(Reply::Continue) => {}
                    Some(Reply::Skip) => break,
                    Some(reply) => return Ok(decided(Stage::Body, reply)),
                }
            }
        }
        self.send_stage_macros(b'E', macros).await?;
        let eom = self.eom().await?;
        Ok(MessageOutcome {
            stage: Stage::Eom,
            reply: eom.reply,
            edits: eom.edits,
            progress: eom.progress,
            refused_recipients: refused,
        })
    }

    async fn send_stage_macros(
        &mut self,
        stage: u8,
        macros: &StageMacros,
    ) -> Result<(), ClientError> {
        let pairs = macros.get(stage);
        if pairs.is_empty() {
            return Ok(());
        }
        self.send_command(Command::Macro {
            stage,
            pairs: pairs.to_vec(),
        })
        .await
    }

    /// Sends a step unless skipped, then reads its reply unless none is due.
    async fn step(
        &mut self,
        cmd: Command,
        no_bit: u32,
        nr_bit: u32,
    ) -> Result<Option<Reply>, ClientError> {
        let neg = self.negotiated.as_ref().ok_or(ClientError::NotNegotiated)?;
        if neg.skips(no_bit) {
            return Ok(None);
        }
        let expect_reply = !neg.no_reply(nr_bit);
        self.send_command(cmd).await?;
        if !expect_reply {
            return Ok(None);
        }
        let reply = self.read_reply("waiting for a reply").await?;
        if reply.is_eom_intermediate() || matches!(reply, Reply::OptNeg { .. }) {
            return Err(ClientError::UnexpectedReply {
                context: "outside end of message",
                reply,
            });
        }
        Ok(Some(reply))
    }

    /// Sends any command as is (for tests of odd sequences). Inside
    /// [`MilterClient::send_message`] it is only buffered.
    pub async fn send_command(&mut self, cmd: Command) -> Result<(), ClientError> {
        if self.batching {
            tokio::time::timeout(self.timeout, self.framed.feed(cmd))
                .await
                .map_err(|_| ClientError::Timeout("sending"))??;
        } else {
            tokio::time::timeout(self.timeout, self.framed.send(cmd))
                .await
                .map_err(|_| ClientError::Timeout("sending"))??;
        }
        Ok(())
    }

    /// Writes out buffered commands (before every read).
    async fn flush(&mut self) -> Result<(), ClientError> {
        tokio::time::timeout(self.timeout, self.framed.flush())
            .await
            .map_err(|_| ClientError::Timeout("sending"))??;
        Ok(())
    }

    /// Writes raw bytes to the connection (for tests with garbage or bad frames).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.flush().await?;
        let stream = self.framed.get_mut();
        tokio::time::timeout(self.timeout, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await
        .map_err(|_| ClientError::Timeout("sending"))??;
        Ok(())
    }

    /// Reads the next reply, skipping progress replies (each restarts the timer).
    pub async fn read_reply(&mut self, context: &'static str) -> Result<Reply, ClientError> {
        loop {
            match self.read_any(context).await? {
                Reply::Progress => continue,
                reply => return Ok(reply),
            }
        }
    }

    /// Reads the next packet from the milter, whatever it is.
    pub async fn read_any(&mut self, context: &'static str) -> Result<Reply, ClientError> {
        self.flush().await?;
        match tokio::time::timeout(self.timeout, self.framed.next()).await {
            Err(_) => Err(ClientError::Timeout(context)),
            Ok(None) => Err(ClientError::Closed(context)),
            Ok(Some(Err(CodecError::Truncated { .. }))) => Err(ClientError::Closed(context)),
            Ok(Some(Err(e))) => Err(e.into()),
            Ok(Some(Ok(reply))) => Ok(reply),
        }
    }

    /// Waits up to `wait` for a packet: `Ok(None)` if none came (the connection
    /// is still open). Useful to check that no stray reply is pending.
    pub async fn reply_within(&mut self, wait: Duration) -> Result<Option<Reply>, ClientError> {
        self.flush().await?;
        match tokio::time::timeout(wait, self.framed.next()).await {
            Err(_) => Ok(None),
            Ok(None) => Err(ClientError::Closed("polling")),
            Ok(Some(Err(e))) => Err(e.into()),
            Ok(Some(Ok(reply))) => Ok(Some(reply)),
        }
    }

    /// True once the milter has closed its end (reads EOF within `wait`).
    /// Consumes any pending reply.
    pub async fn is_closed_within(&mut self, wait: Duration) -> bool {
        if self.flush().await.is_err() {
            return true;
        }
        matches!(
            tokio::time::timeout(wait, self.framed.next()).await,
            Ok(None) | Ok(Some(Err(_)))
        )
    }

    /// Gives back the stream. A command buffered by
    /// [`MilterClient::send_message`] (its final ABORT) is dropped; send QUIT
    /// or read first to write it.
    pub fn into_inner(self) -> S {
        self.framed.into_inner()
    }
}

/// A reply that decides something (anything but "no reply" and CONTINUE).
fn verdict_of(reply: Option<Reply>) -> Option<Reply> {
    reply.filter(|r| *r != Reply::Continue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_headers_and_body_like_postfix() {
        let eml = b"From: a@x.test\r\nSubject: a\r\n\tcontinued\r\nX-No-Space:v\r\nnot a header\r\n\r\nline1\nline2\r\n\r\nend";
        let (headers, body) = split_message(eml, false);
        assert_eq!(
            headers,
            vec![
                ("From".to_owned(), "a@x.test".to_owned()),
                ("Subject".to_owned(), "a\n\tcontinued".to_owned()),
                ("X-No-Space".to_owned(), "v".to_owned()),
            ]
        );
        assert_eq!(body, b"line1\r\nline2\r\n\r\nend");
        let (headers, _) = split_message(b"Subject:  two\n\nb", true);
        assert_eq!(headers[0].1, "  two");
    }

    #[test]
    fn message_without_body_or_blank_line() {
        let (headers, body) = split_message(b"Subject: x\r\n", false);
        assert_eq!(headers.len(), 1);
        assert!(body.is_empty());
        let (headers, body) = split_message(b"", false);
        assert!(headers.is_empty() && body.is_empty());
        let (headers, body) = split_message(b"\r\nbody only", false);
        assert!(headers.is_empty());
        assert_eq!(body, b"body only");
    }

    #[test]
    fn stage_macros_group_by_stage() {
        let m = StageMacros::new()
            .with(b'M', "i", "Q1")
            .with(b'M', "{auth_authen}", "alice")
            .with(b'E', "i", "Q1");
        assert_eq!(m.get(b'M').len(), 2);
        assert_eq!(m.get(b'E'), &[("i".to_owned(), "Q1".to_owned())]);
        assert!(m.get(b'R').is_empty());
    }
}
