//! The milter protocol (version 6, as Postfix 3.7 and Sendmail 8.17 speak it):
//! frames and commands ([`codec`]), the per-connection state machine
//! ([`session`]), and a client that plays the MTA ([`client`], for tests and the
//! load generator). This module knows nothing of the policy: it hands a finished
//! [`Message`] to a [`Filter`] and turns the returned [`Verdict`] into replies.

pub mod budget;
pub mod client;
pub mod codec;
pub mod session;

use std::future::Future;
use std::pin::Pin;

use crate::message::{Connection, Message};
use crate::verdict::{Action, SmtpReply, Verdict};

/// A per-message cap of the session ([`session::SessionConfig`]) that a message
/// crossed, with the cap's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `[milter] max_recipients`.
    Recipients(usize),
    /// `[milter] max_headers`.
    Headers(usize),
}

/// A boxed future, as returned by [`Filter::end_of_message`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the daemon plugs into a milter session. The session calls these hooks as
/// the MTA streams a message; returning `Some(verdict)` from an early hook ends the
/// message at once with that verdict (for example a declared `SIZE=` above the cap).
pub trait Filter: Send + Sync + 'static {
    /// At CONNECT (before HELO). Returning a verdict refuses the whole connection;
    /// when the MTA asked for no reply at CONNECT, the refusal answers every MAIL.
    fn connect(&self, _conn: &Connection) -> Option<Verdict> {
        None
    }

    /// After MAIL FROM, with `msg.envelope.sender` and its parameters set.
    fn mail(&self, _msg: &Message) -> Option<Verdict> {
        None
    }

    /// Before a body chunk of `chunk_len` bytes is appended to `msg.raw`. A verdict
    /// here stops buffering (the rest of the body is never stored).
    fn body_chunk(&self, _msg: &Message, _chunk_len: usize) -> Option<Verdict> {
        None
    }

    /// At end of message: the full decision. The session sends progress replies to
    /// the MTA while this future runs.
    fn end_of_message(&self, msg: Message) -> BoxFuture<'static, Verdict>;

    /// The next body chunk, header field or recipient would take the shared
    /// memory budget past its limit: the verdict for this message (a tempfail, so
    /// the sender retries). The session frees what the message held.
    fn over_budget(&self, _msg: &Message) -> Verdict {
        Verdict::tempfail("memory_budget", "buffered-bytes budget full")
    }

    /// The message crossed one of the session's caps ([`Limit`]): the verdict for
    /// it (a refusal; the session keeps nothing more of the message). The default
    /// refuses with a plain reply; the daemon judges it by the policy's rules.
    fn over_limit(&self, _msg: &Message, limit: Limit) -> Verdict {
        let (code, enhanced, text) = match limit {
            Limit::Recipients(n) => (550, "5.5.3", format!("Too many recipients: more than {n}")),
            Limit::Headers(n) => (
                552,
                "5.3.4",
                format!("Too many header fields: more than {n}"),
            ),
        };
        Verdict {
            action: Action::Reject,
            reply: Some(SmtpReply::new(code, enhanced, text)),
            headers: Vec::new(),
            reasons: Vec::new(),
        }
    }

    /// The message ended without a verdict from `end_of_message` (ABORT, or the
    /// connection closed mid-message). For bookkeeping only.
    fn aborted(&self, _msg: &Message) {}
}
