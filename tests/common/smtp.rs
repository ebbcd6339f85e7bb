//! A small blocking SMTP client that sends messages byte for byte, and an
//! in-process SMTP sink that records every message Postfix relays to it.

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- client --

/// One SMTP reply, possibly multi-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The lines exactly as received, without CRLF (`"250-8BITMIME"`, ...).
    pub lines: Vec<String>,
}

impl Reply {
    /// The full reply as the client saw it, lines joined with `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The reply without the `NNN ` / `NNN-` prefixes, lines joined with `\n`.
    pub fn message(&self) -> String {
        self.lines
            .iter()
            .map(|l| l.get(4..).unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The enhanced status code of the first line (`"5.7.1"`), if any.
    pub fn enhanced(&self) -> Option<String> {
        let first = self.message();
        let word = first.split_whitespace().next()?;
        let parts: Vec<&str> = word.split('.').collect();
        (parts.len() == 3 && parts.iter().all(|p| p.parse::<u16>().is_ok()))
            .then(|| word.to_string())
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

/// Where an SMTP transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Helo,
    MailFrom,
    /// Every RCPT TO was refused; the outcome holds the last refusal.
    RcptTo,
    /// The DATA command itself was refused.
    Data,
    /// The reply after the final `.` (accepted, rejected or deferred).
    EndOfData,
}

/// What the SMTP client saw for one message.
#[derive(Debug, Clone)]
pub struct SmtpOutcome {
    /// Where the transaction ended; `EndOfData` unless refused earlier.
    pub stage: Stage,
    /// The final reply: after end of DATA, or the refusal that ended it.
    pub reply: Reply,
    /// The reply to each RCPT TO, in order.
    pub rcpt_replies: Vec<Reply>,
}

impl SmtpOutcome {
    pub fn code(&self) -> u16 {
        self.reply.code
    }

    /// Full reply text, lines joined with `\n` (`"550 5.7.1 ..."`).
    pub fn text(&self) -> String {
        self.reply.text()
    }

    /// The message was accepted (2xx after end of DATA).
    pub fn accepted(&self) -> bool {
        self.stage == Stage::EndOfData && (200..300).contains(&self.reply.code)
    }

    /// Postfix's queue id from `250 2.0.0 Ok: queued as XYZ`.
    pub fn queue_id(&self) -> Option<String> {
        let text = self.reply.text();
        let (_, rest) = text.split_once("queued as ")?;
        Some(rest.split_whitespace().next()?.to_string())
    }
}

/// Converts a message to SMTP DATA wire form: bare LF becomes CRLF, lines
/// starting with `.` are dot-stuffed, a final CRLF is added if missing, and
/// the terminating `.` line is appended. Nothing else changes.
pub fn to_wire(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 50 + 8);
    let mut at_line_start = true;
    for (i, &b) in raw.iter().enumerate() {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// A blocking SMTP client session.
pub struct SmtpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// The greeting the server sent.
    pub banner: Reply,
}

impl SmtpClient {
    /// Connects and reads the banner. `timeout` applies to every read/write.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<SmtpClient> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let banner = read_reply(&mut reader)?;
        Ok(SmtpClient {
            reader,
            writer: stream,
            banner,
        })
    }

    pub fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.writer.set_read_timeout(Some(timeout))?;
        self.writer.set_write_timeout(Some(timeout))
    }

    /// Sends one command line (CRLF is appended) and reads the reply.
    pub fn command(&mut self, line: &str) -> io::Result<Reply> {
        self.writer.write_all(line.as_bytes())?;
        self.writer.write_all(b"\r\n")?;
        read_reply(&mut self.reader)
    }

    /// Sends DATA and, if the server answers 354, the message in wire form
    /// (see [`to_wire`]). Returns `(354-or-refusal, Some(final reply))`.
    pub fn data(&mut self, raw: &[u8]) -> io::Result<(Reply, Option<Reply>)> {
        let go = self.command("DATA")?;
        if go.code != 354 {
            return Ok((go, None));
        }
        self.writer.write_all(&to_wire(raw))?;
        self.writer.flush()?;
        let end = read_reply(&mut self.reader)?;
        Ok((go, Some(end)))
    }

    /// Sends QUIT and closes; errors are ignored (the server may be gone).
    pub fn quit(mut self) {
        let _ = self.command("QUIT");
        let _ = self.writer.shutdown(Shutdown::Both);
    }

    /// One whole transaction on this session: MAIL, RCPT..., DATA.
    /// Recipients that are refused are skipped; DATA is sent if at least one
    /// was accepted.
    pub fn transaction(
        &mut self,
        from: &str,
        rcpts: &[&str],
        raw: &[u8],
    ) -> io::Result<SmtpOutcome> {
        let mail = self.command(&format!("MAIL FROM:<{from}>"))?;
        if !mail.is_positive() {
            return Ok(SmtpOutcome {
                stage: Stage::MailFrom,
                reply: mail,
                rcpt_replies: Vec::new(),
            });
        }
        let mut rcpt_replies = Vec::new();
        for rcpt in rcpts {
            rcpt_replies.push(self.command(&format!("RCPT TO:<{rcpt}>"))?);
        }
        if !rcpt_replies.iter().any(Reply::is_positive) {
            let reply = rcpt_replies.last().cloned().unwrap_or(Reply {
                code: 0,
                lines: vec!["(no recipients given)".into()],
            });
            let _ = self.command("RSET");
            return Ok(SmtpOutcome {
                stage: Stage::RcptTo,
                reply,
                rcpt_replies,
            });
        }
        let (go, end) = self.data(raw)?;
        Ok(match end {
            Some(reply) => SmtpOutcome {
                stage: Stage::EndOfData,
                reply,
                rcpt_replies,
            },
            None => SmtpOutcome {
                stage: Stage::Data,
                reply: go,
                rcpt_replies,
            },
        })
    }
}

/// Connects to `addr`, says EHLO `helo`, runs one transaction and QUITs.
/// Refusals are outcomes (`Ok`); only I/O failures are `Err`.
pub fn send_message(
    addr: SocketAddr,
    helo: &str,
    from: &str,
    rcpts: &[&str],
    raw: &[u8],
    timeout: Duration,
) -> io::Result<SmtpOutcome> {
    let mut client = connect_for_banner(addr, timeout)?;
    if client.banner.code != 220 {
        let reply = client.banner.clone();
        client.quit();
        return Ok(SmtpOutcome {
            stage: Stage::Connect,
            reply,
            rcpt_replies: Vec::new(),
        });
    }
    let ehlo = client.command(&format!("EHLO {helo}"))?;
    if ehlo.code != 250 {
        client.quit();
        return Ok(SmtpOutcome {
            stage: Stage::Helo,
            reply: ehlo,
            rcpt_replies: Vec::new(),
        });
    }
    let outcome = client.transaction(from, rcpts, raw)?;
    client.quit();
    Ok(outcome)
}

/// Connects and reads the banner. A connection that a just-started Postfix
/// closes or resets before any greeting (seen once in CI, right after master
/// came up) is tried again twice: nothing was sent on it yet.
fn connect_for_banner(addr: SocketAddr, timeout: Duration) -> io::Result<SmtpClient> {
    let mut attempt = 0;
    loop {
        match SmtpClient::connect(addr, timeout) {
            Err(e)
                if attempt < 2
                    && matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                    ) =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(300));
            }
            other => return other,
        }
    }
}

fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    if reader.read_until(b'\n', buf)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed by server",
        ));
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(())
}

fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    loop {
        read_line(reader, &mut buf)?;
        let line = String::from_utf8_lossy(&buf).into_owned();
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("bad reply {line:?}"))
            })?;
        let more = line.as_bytes().get(3) == Some(&b'-');
        lines.push(line);
        if !more {
            return Ok(Reply { code, lines });
        }
    }
}

// ------------------------------------------------------------------ sink --

/// A message the sink received.
#[derive(Debug, Clone)]
pub struct SinkMessage {
    pub helo: String,
    /// The MAIL FROM address without `<>`.
    pub mail_from: String,
    /// The RCPT TO addresses without `<>`, in order.
    pub rcpts: Vec<String>,
    /// The message exactly as received: CRLF line ends, dot-stuffing removed,
    /// including the Received: header Postfix added.
    pub data: Vec<u8>,
}

struct SinkState {
    messages: Mutex<Vec<SinkMessage>>,
    arrived: Condvar,
    stop: AtomicBool,
    counter: AtomicUsize,
    dir: PathBuf,
}

/// An SMTP server on 127.0.0.1 that accepts everything. Every message is
/// kept in memory and also written to `DIR/NNNNNN.eml` (written under a
/// temporary name, then renamed) for post-mortems.
///
/// It replaces Postfix's own `smtp-sink`, whose dump files convert CRLF to
/// LF, add headers and a trailing empty line, and stay open while a
/// transaction is in progress, so they can't be compared byte for byte.
pub struct SmtpSink {
    addr: SocketAddr,
    state: Arc<SinkState>,
}

impl SmtpSink {
    pub fn start(dir: &Path) -> SmtpSink {
        fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("test bed: create {}: {e}", dir.display()));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("test bed: sink bind");
        let addr = listener.local_addr().expect("test bed: sink addr");
        let state = Arc::new(SinkState {
            messages: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            stop: AtomicBool::new(false),
            counter: AtomicUsize::new(0),
            dir: dir.to_path_buf(),
        });
        let st = state.clone();
        std::thread::Builder::new()
            .name(format!("smtp-sink-{}", addr.port()))
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let st = st.clone();
                    let _ = std::thread::Builder::new()
                        .name("smtp-sink-conn".into())
                        .spawn(move || {
                            let _ = serve(conn, &st);
                        });
                }
            })
            .expect("test bed: start sink thread");
        SmtpSink { addr, state }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn messages(&self) -> Vec<SinkMessage> {
        self.state.messages.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.messages.lock().unwrap().len()
    }

    /// Waits until at least `n` messages arrived; returns all of them, or
    /// `Err(all so far)` on timeout.
    pub fn wait(&self, n: usize, timeout: Duration) -> Result<Vec<SinkMessage>, Vec<SinkMessage>> {
        let deadline = Instant::now() + timeout;
        let mut msgs = self.state.messages.lock().unwrap();
        while msgs.len() < n {
            let now = Instant::now();
            if now >= deadline {
                return Err(msgs.clone());
            }
            msgs = self
                .state
                .arrived
                .wait_timeout(msgs, deadline - now)
                .unwrap()
                .0;
        }
        Ok(msgs.clone())
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn serve(conn: TcpStream, st: &SinkState) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(600)))?;
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    out.write_all(b"220 sink.testbed.invalid ESMTP test bed sink\r\n")?;
    let mut helo = String::new();
    let mut from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        if st.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        read_line(&mut reader, &mut line)?;
        let text = String::from_utf8_lossy(&line).into_owned();
        let upper = text.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("");
        match verb {
            "EHLO" => {
                helo = text[4..].trim().to_string();
                out.write_all(
                    b"250-sink.testbed.invalid\r\n250-PIPELINING\r\n250-SIZE\r\n\
                      250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n",
                )?;
            }
            "HELO" => {
                helo = text[4..].trim().to_string();
                out.write_all(b"250 sink.testbed.invalid\r\n")?;
            }
            "MAIL" => {
                from = Some(angle_addr(&text));
                rcpts.clear();
                out.write_all(b"250 2.1.0 Ok\r\n")?;
            }
            "RCPT" if from.is_some() => {
                rcpts.push(angle_addr(&text));
                out.write_all(b"250 2.1.5 Ok\r\n")?;
            }
            "DATA" if from.is_some() && !rcpts.is_empty() => {
                out.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                let data = read_data(&mut reader)?;
                let n = st.counter.fetch_add(1, Ordering::SeqCst);
                let msg = SinkMessage {
                    helo: helo.clone(),
                    mail_from: from.take().unwrap_or_default(),
                    rcpts: std::mem::take(&mut rcpts),
                    data,
                };
                let tmp = st.dir.join(format!(".{n:06}.tmp"));
                if fs::write(&tmp, &msg.data).is_ok() {
                    let _ = fs::rename(&tmp, st.dir.join(format!("{n:06}.eml")));
                }
                st.messages.lock().unwrap().push(msg);
                st.arrived.notify_all();
                out.write_all(format!("250 2.0.0 Ok: queued as sink{n}\r\n").as_bytes())?;
            }
            "RSET" => {
                from = None;
                rcpts.clear();
                out.write_all(b"250 2.0.0 Ok\r\n")?;
            }
            "NOOP" => out.write_all(b"250 2.0.0 Ok\r\n")?,
            "QUIT" => {
                out.write_all(b"221 2.0.0 Bye\r\n")?;
                return Ok(());
            }
            "RCPT" | "DATA" => out.write_all(b"503 5.5.1 Bad sequence of commands\r\n")?,
            _ => out.write_all(b"502 5.5.2 Command not implemented\r\n")?,
        }
    }
}

/// The address between `<` and `>` of a MAIL FROM / RCPT TO line.
fn angle_addr(line: &str) -> String {
    match (line.find('<'), line.find('>')) {
        (Some(a), Some(b)) if b > a => line[a + 1..b].to_string(),
        _ => line
            .split_once(':')
            .map(|(_, r)| r.trim().to_string())
            .unwrap_or_default(),
    }
}

/// Reads DATA up to the terminating `.` line, removing dot-stuffing and
/// keeping every other byte (line ends included) as sent.
fn read_data(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in DATA"));
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(data);
        }
        let start = usize::from(line.first() == Some(&b'.'));
        data.extend_from_slice(&line[start..]);
    }
}
