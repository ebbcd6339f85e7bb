//! The message as the filter sees it: connection facts, envelope, macros, and the
//! raw message (headers and body) in one buffer.
//!
//! The milter session fills a [`Message`] as Postfix streams it; the offline `scan`
//! command builds one from an .eml file. Both then go through the same pipeline.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::BytesMut;

/// Milter macros by name, with the braces of long names stripped
/// (`{auth_authen}` is stored as `auth_authen`, `i` as `i`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Macros(HashMap<String, String>);

impl Macros {
    pub fn get(&self, name: &str) -> Option<&str> {
        let name = name.trim_start_matches('{').trim_end_matches('}');
        self.0.get(name).map(String::as_str)
    }

    /// Stores a macro; the name may come with or without braces.
    pub fn insert(&mut self, name: &str, value: &str) {
        let name = name.trim_start_matches('{').trim_end_matches('}');
        self.0.insert(name.to_owned(), value.to_owned());
    }

    pub fn extend(&mut self, other: &Macros) {
        for (k, v) in &other.0 {
            self.0.insert(k.clone(), v.clone());
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Where the SMTP client connected from, as the MTA reported it at CONNECT.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// Our own id for the milter connection, used in logs before Postfix assigns a
    /// queue id.
    pub id: u64,
    /// The client's verified host name, or `[ip]` when unknown.
    pub hostname: String,
    /// Client IP address; `None` for a unix-socket or unknown client.
    pub addr: Option<IpAddr>,
    pub port: u16,
    /// HELO/EHLO name, if the client sent one.
    pub helo: Option<String>,
    /// Macros sent at CONNECT and HELO (`j`, `{daemon_name}`, `{client_addr}`, ...).
    pub macros: Macros,
}

impl Connection {
    /// The SMTP client as log lines name it: its IP address from CONNECT, else
    /// Postfix's `{client_addr}` macro, else the host name Postfix reported
    /// (`localhost` for mail from sendmail(1)); made safe for one log line.
    pub fn client(&self) -> String {
        if let Some(addr) = self.addr {
            return addr.to_string();
        }
        let name = self
            .macros
            .get("client_addr")
            .filter(|a| !a.is_empty())
            .unwrap_or(&self.hostname);
        crate::inspect::names::display_name(name, usize::MAX)
    }
}

/// The SMTP envelope of one message.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// Envelope sender without angle brackets; empty for the null sender `<>`.
    pub sender: String,
    /// ESMTP parameters of MAIL FROM, verbatim (`SIZE=1234`, `BODY=8BITMIME`).
    pub sender_params: Vec<String>,
    /// Envelope recipients without angle brackets.
    pub recipients: Vec<String>,
}

impl Envelope {
    /// The size the client declared with `SIZE=` at MAIL FROM.
    pub fn declared_size(&self) -> Option<u64> {
        self.sender_params.iter().find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.eq_ignore_ascii_case("SIZE")
                .then(|| v.parse().ok())
                .flatten()
        })
    }
}

/// One header field as received: name and unfolded-or-folded value exactly as the
/// MTA sent it (folds are `\n` followed by whitespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// One message: everything the rules may look at.
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub connection: Arc<Connection>,
    pub envelope: Envelope,
    /// Macros of the MAIL, RCPT, DATA, EOH and EOM stages (later ones win).
    pub macros: Macros,
    pub headers: Vec<Header>,
    /// The whole message, headers then a blank line then body, with CRLF line ends.
    pub raw: BytesMut,
    /// Offset of the body in `raw` (just past the blank line), once headers ended.
    pub body_offset: Option<usize>,
}

impl Message {
    /// The Postfix queue id (`i` macro), once Postfix has assigned one.
    pub fn queue_id(&self) -> Option<&str> {
        self.macros
            .get("i")
            .or_else(|| self.connection.macros.get("i"))
            .filter(|s| !s.is_empty())
    }

    /// A macro from the message stages, falling back to the connection's.
    pub fn macro_value(&self, name: &str) -> Option<&str> {
        self.macros
            .get(name)
            .or_else(|| self.connection.macros.get(name))
    }

    /// The SASL login name, if the client authenticated.
    pub fn auth_login(&self) -> Option<&str> {
        self.macro_value("auth_authen").filter(|s| !s.is_empty())
    }

    /// Appends one header, both to the header list and to the raw buffer.
    pub fn push_header(&mut self, name: &str, value: &str) {
        self.raw.extend_from_slice(name.as_bytes());
        self.raw.extend_from_slice(b": ");
        // Postfix sends folds as bare LF; the raw buffer keeps CRLF throughout.
        for (i, line) in value.split('\n').enumerate() {
            if i > 0 {
                self.raw.extend_from_slice(b"\r\n");
            }
            self.raw
                .extend_from_slice(line.strip_suffix('\r').unwrap_or(line).as_bytes());
        }
        self.raw.extend_from_slice(b"\r\n");
        self.headers.push(Header {
            name: name.to_owned(),
            value: value.to_owned(),
        });
    }

    /// Marks the end of the headers (appends the blank separator line).
    pub fn end_headers(&mut self) {
        if self.body_offset.is_none() {
            self.raw.extend_from_slice(b"\r\n");
            self.body_offset = Some(self.raw.len());
        }
    }

    pub fn push_body(&mut self, chunk: &[u8]) {
        self.end_headers();
        if Some(self.raw.len()) == self.body_offset {
            self.presize_for_declared_size();
        }
        self.raw.extend_from_slice(chunk);
    }

    /// Sizes the buffer for the whole message when the client declared `SIZE=`,
    /// so that a large message is not copied every time the buffer doubles (and
    /// does not fault in fresh pages for each copy). Only address space is taken
    /// here: pages are touched as the body arrives.
    fn presize_for_declared_size(&mut self) {
        /// A client may declare any size; past this the buffer grows as it fills.
        const PRESIZE_CAP: u64 = 64 << 20;
        let Some(declared) = self.envelope.declared_size() else {
            return;
        };
        // Postfix adds its own header fields (Received:, ...) to what the client sent.
        let expected = declared.min(PRESIZE_CAP) + declared.min(PRESIZE_CAP) / 64 + 4096;
        if let Some(more) = usize::try_from(expected)
            .ok()
            .and_then(|total| total.checked_sub(self.raw.len()))
        {
            self.raw.reserve(more);
        }
    }

    pub fn body(&self) -> &[u8] {
        match self.body_offset {
            Some(off) => &self.raw[off..],
            None => &[],
        }
    }

    pub fn body_len(&self) -> usize {
        self.body().len()
    }

    /// All values of a header, by case-insensitive name.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Builds a message from an .eml file's bytes (for the `scan` command and
    /// tests), split by [`split_message`] exactly as the milter client splits it
    /// to stream it to the daemon.
    pub fn from_eml(bytes: &[u8]) -> Message {
        let mut msg = Message::default();
        let (headers, body) = split_message(bytes, false);
        for (name, value) in &headers {
            msg.push_header(name, value);
        }
        msg.end_headers();
        msg.push_body(&body);
        msg
    }
}

/// Splits raw message bytes the way Postfix streams them to a milter: one
/// `(name, value)` per header, folds kept as `\n` plus the original whitespace,
/// one leading space stripped unless `leading_space` (HDR_LEADSPC); then the body
/// with CRLF line ends, without the blank separator line.
pub fn split_message(eml: &[u8], leading_space: bool) -> (Vec<(String, String)>, Vec<u8>) {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut rest = eml;
    let mut body_start = eml.len();
    let mut pos = 0;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let consumed = rest.len() - next.len();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            body_start = pos + consumed;
            break;
        }
        let text = String::from_utf8_lossy(line);
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, value)) = headers.last_mut() {
                value.push('\n');
                value.push_str(&text);
            }
        } else if let Some((name, value)) = text.split_once(':') {
            let value = if leading_space {
                value
            } else {
                value.strip_prefix(' ').unwrap_or(value)
            };
            headers.push((name.trim_end().to_owned(), value.to_owned()));
        }
        pos += consumed;
        rest = next;
    }
    let body = eml.get(body_start..).unwrap_or(&[]);
    (headers, to_crlf(body))
}

/// `body` with every bare `\n` made `\r\n`, as the body arrives from Postfix.
fn to_crlf(body: &[u8]) -> Vec<u8> {
    let mut crlf = Vec::with_capacity(body.len() + body.len() / 32);
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', body) {
        crlf.extend_from_slice(&body[start..i]);
        if i == 0 || body[i - 1] != b'\r' {
            crlf.push(b'\r');
        }
        start = i;
    }
    crlf.extend_from_slice(&body[start..]);
    crlf
}

/// Unfolds a header value (`\n` + whitespace → one space) and trims it.
pub fn unfold(value: &str) -> String {
    value
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_line_feeds_become_crlf_and_crlf_stays() {
        for (body, want) in [
            (&b""[..], &b""[..]),
            (b"\n", b"\r\n"),
            (b"a\nb", b"a\r\nb"),
            (b"a\r\nb\n", b"a\r\nb\r\n"),
            (b"\n\n\r\n", b"\r\n\r\n\r\n"),
            (b"a\r\r\nb\rc", b"a\r\r\nb\rc"),
            (b"no line end", b"no line end"),
        ] {
            assert_eq!(to_crlf(body), want, "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn eml_round_trip_keeps_headers_and_body() {
        let eml = b"From: a@x.test\nSubject: hi\n  there\n\nline1\nline2\n";
        let m = Message::from_eml(eml);
        assert_eq!(m.headers.len(), 2);
        assert_eq!(m.headers[1].value, "hi\n  there");
        assert_eq!(m.body(), b"line1\r\nline2\r\n");
        assert_eq!(
            &m.raw[..],
            &b"From: a@x.test\r\nSubject: hi\r\n  there\r\n\r\nline1\r\nline2\r\n"[..]
        );
    }

    #[test]
    fn declared_size_is_read_from_mail_params() {
        let env = Envelope {
            sender_params: vec!["BODY=8BITMIME".into(), "size=1234".into()],
            ..Default::default()
        };
        assert_eq!(env.declared_size(), Some(1234));
    }

    #[test]
    fn the_body_buffer_is_sized_once_from_the_declared_size() {
        let mut msg = Message::default();
        msg.envelope.sender_params = vec!["SIZE=3000000".into()];
        msg.push_header("Subject", "x");
        msg.push_body(b"first chunk\r\n");
        let capacity = msg.raw.capacity();
        assert!(capacity >= 3_000_000, "{capacity}");
        while msg.raw.len() < 2_990_000 {
            msg.push_body(&[b'a'; 65_535]);
        }
        assert_eq!(msg.raw.capacity(), capacity, "the buffer was reallocated");

        // A declared size is a claim: past the cap only address space for the cap.
        let mut liar = Message::default();
        liar.envelope.sender_params = vec!["SIZE=999999999999".into()];
        liar.push_body(b"x");
        assert!(liar.raw.capacity() < 80 << 20);
    }

    #[test]
    fn macro_names_are_normalised() {
        let mut m = Macros::default();
        m.insert("{auth_authen}", "alice");
        assert_eq!(m.get("auth_authen"), Some("alice"));
        assert_eq!(m.get("{auth_authen}"), Some("alice"));
    }
}
