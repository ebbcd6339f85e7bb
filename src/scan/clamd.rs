//! One clamd: its address, PING, zINSTREAM, and clamd's replies.
//!
//! Why both clamav-client and our own INSTREAM: clamav-client 2.3 does PING well
//! (we use it for health probes, wrapped in a timeout since it has none), but its
//! `scan_buffer` cannot tell us what we need for a scan:
//! - it has no connect or scan timeout, and connect and scan share one future, so
//!   "clamd unreachable" and "clamd slow" cannot be told apart;
//! - when clamd stops reading (StreamMaxLength reached) it answers
//!   `INSTREAM size limit exceeded. ERROR` and closes; on a unix socket our next
//!   write then fails with EPIPE and clamav-client returns that I/O error, losing
//!   the answer clamd did send (seen with clamd 1.4.6). We read the reply after a
//!   failed write instead;
//! - it returns whatever bytes came, so an empty reply (clamd crashed) would look
//!   like an answer.
//!
//! So scans run on tokio streams here, with the same wire format
//! (`zINSTREAM\0`, u32 BE length-prefixed chunks, a zero-length end marker).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::timeout;

/// Longest reply read from clamd.
const MAX_REPLY: usize = 64 * 1024;

/// Where a clamd listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClamdAddr {
    /// `unix:/PATH`.
    Unix(PathBuf),
    /// `tcp:HOST:PORT` (also `inet:`); IPv6 hosts in brackets.
    Tcp { host: String, port: u16 },
}

impl ClamdAddr {
    /// Parses `unix:/PATH`, `tcp:HOST:PORT`, `inet:HOST:PORT`, `inet6:[ADDR]:PORT`.
    pub fn parse(text: &str) -> Result<ClamdAddr, String> {
        let text = text.trim();
        let bad = |why: &str| {
            Err(format!(
                "{text:?}: {why}; write unix:/PATH or tcp:HOST:PORT"
            ))
        };
        let Some((scheme, rest)) = text.split_once(':') else {
            return bad("no scheme");
        };
        match scheme.to_ascii_lowercase().as_str() {
            "unix" | "local" => {
                if !rest.starts_with('/') {
                    return bad("a unix socket path must be absolute");
                }
                Ok(ClamdAddr::Unix(PathBuf::from(rest)))
            }
            "tcp" | "inet" | "inet6" => {
                let Some((host, port)) = rest.rsplit_once(':') else {
                    return bad("no port");
                };
                let (host, bracketed) =
                    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                        Some(h) => (h, true),
                        None => (host, false),
                    };
                if host.is_empty() || host.contains(['/', ' ', '[', ']']) {
                    return bad("no host");
                }
                if bracketed != host.contains(':')
                    || (bracketed && host.parse::<std::net::Ipv6Addr>().is_err())
                {
                    return bad("IPv6 addresses go in brackets: tcp:[::1]:3310");
                }
                match port.parse::<u16>() {
                    Ok(port) if port > 0 => Ok(ClamdAddr::Tcp {
                        host: host.to_owned(),
                        port,
                    }),
                    _ => bad("bad port"),
                }
            }
            _ => bad("unknown scheme"),
        }
    }

    /// `host:port` as tokio resolves it (IPv6 in brackets).
    fn socket_addr_text(host: &str, port: u16) -> String {
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }
}

impl fmt::Display for ClamdAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClamdAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            ClamdAddr::Tcp { host, port } => {
                write!(f, "tcp:{}", ClamdAddr::socket_addr_text(host, *port))
            }
        }
    }
}

/// clamd's answer to one INSTREAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAnswer {
    /// `stream: OK`.
    Clean,
    /// `stream: SIGNATURE FOUND`.
    Infected(String),
    /// `INSTREAM size limit exceeded. ERROR`: the stream is bigger than clamd's
    /// StreamMaxLength. Not clean.
    SizeLimit(String),
    /// `... ERROR`, or any reply that is none of the above. Never clean.
    Error(String),
}

impl ClamdAnswer {
    /// Parses a reply (NUL- or newline-terminated; several replies possible with
    /// AllMatchScan, where the first FOUND wins).
    pub fn parse(reply: &[u8]) -> ClamdAnswer {
        let text = String::from_utf8_lossy(reply);
        let lines: Vec<&str> = text
            .split(['\0', '\n'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.is_empty() {
            return ClamdAnswer::Error("empty reply".into());
        }
        let mut first_other = None;
        for line in &lines {
            let answer = ClamdAnswer::parse_line(line);
            if matches!(answer, ClamdAnswer::Infected(_)) {
                return answer;
            }
            first_other.get_or_insert(answer);
        }
        if lines.len() > 1 {
            // Several replies with no FOUND: clean only if each said OK.
            if let Some(bad) = lines
                .iter()
                .map(|l| ClamdAnswer::parse_line(l))
                .find(|a| *a != ClamdAnswer::Clean)
            {
                return bad;
            }
        }
        first_other.unwrap_or(ClamdAnswer::Error("empty reply".into()))
    }

    fn parse_line(line: &str) -> ClamdAnswer {
        // `stream: ...` for INSTREAM; with IDSESSION `N: stream: ...`.
        let body = match line.find("stream:") {
            Some(i) => line[i + "stream:".len()..].trim(),
            None => line,
        };
        if body == "OK" {
            return ClamdAnswer::Clean;
        }
        if let Some(sig) = body.strip_suffix(" FOUND") {
            let sig = sig.trim();
            return if sig.is_empty() {
                ClamdAnswer::Error(line.to_owned())
            } else {
                ClamdAnswer::Infected(sig.to_owned())
            };
        }
        if body.ends_with("ERROR") && body.to_ascii_lowercase().contains("size limit exceeded") {
            return ClamdAnswer::SizeLimit(line.to_owned());
        }
        ClamdAnswer::Error(line.to_owned())
    }
}

/// Why a scan got no answer from a clamd.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClamdError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("I/O: {0}")]
    Io(String),
    #[error("connection closed without an answer")]
    NoAnswer,
}

impl ClamdError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, ClamdError::ConnectTimeout(_) | ClamdError::Timeout(_))
    }
}

/// A connected stream of either kind.
enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl ClamdAddr {
    async fn connect(&self, limit: Duration) -> Result<Conn, ClamdError> {
        let fut = async {
            match self {
                ClamdAddr::Unix(path) => UnixStream::connect(path).await.map(Conn::Unix),
                ClamdAddr::Tcp { host, port } => {
                    TcpStream::connect(ClamdAddr::socket_addr_text(host, *port))
                        .await
                        .map(Conn::Tcp)
                }
            }
        };
        match timeout(limit, fut).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(ClamdError::Connect(e.to_string())),
            Err(_) => Err(ClamdError::ConnectTimeout(limit)),
        }
    }

    /// Sends `data` by zINSTREAM in `chunk`-byte chunks and parses the answer.
    /// `connect_timeout` bounds the connection, `scan_timeout` everything after.
    pub async fn instream(
        &self,
        data: &Bytes,
        chunk: usize,
        connect_timeout: Duration,
        scan_timeout: Duration,
    ) -> Result<ClamdAnswer, ClamdError> {
        let conn = self.connect(connect_timeout).await?;
        let exchange = async {
            match conn {
                Conn::Unix(s) => instream_on(s, data, chunk).await,
                Conn::Tcp(s) => instream_on(s, data, chunk).await,
            }
        };
        match timeout(scan_timeout, exchange).await {
            Ok(Ok(reply)) => Ok(ClamdAnswer::parse(&reply)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClamdError::Timeout(scan_timeout)),
        }
    }

    /// PING through clamav-client; `Ok` only for `PONG`.
    pub async fn ping(&self, limit: Duration) -> Result<(), ClamdError> {
        use clamav_client::tokio::{Socket, Tcp, ping};
        let fut = async {
            match self {
                ClamdAddr::Unix(path) => ping(Socket { socket_path: path }).await,
                ClamdAddr::Tcp { host, port } => {
                    ping(Tcp {
                        host_address: ClamdAddr::socket_addr_text(host, *port),
                    })
                    .await
                }
            }
        };
        match timeout(limit, fut).await {
            Ok(Ok(reply)) if reply.as_slice() == clamav_client::PONG => Ok(()),
            Ok(Ok(reply)) if reply.is_empty() => Err(ClamdError::NoAnswer),
            Ok(Ok(reply)) => Err(ClamdError::Io(format!(
                "PING answered {:?}",
                String::from_utf8_lossy(&reply).trim_end_matches('\0')
            ))),
            Ok(Err(e)) => Err(ClamdError::Connect(e.to_string())),
            Err(_) => Err(ClamdError::Timeout(limit)),
        }
    }
}

async fn instream_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    data: &Bytes,
    chunk: usize,
) -> Result<Vec<u8>, ClamdError> {
    let sent = send_stream(&mut stream, data, chunk.max(1)).await;
    let mut reply = Vec::new();
    let read = read_reply(&mut stream, &mut reply).await;
    match (sent, read) {
        // clamd may answer before reading everything (size limit) and close:
        // whatever it said counts, even if our writes failed.
        (_, Ok(())) if !reply.is_empty() => Ok(reply),
        (Err(e), _) => Err(ClamdError::Io(e.to_string())),
        (Ok(()), Err(e)) => Err(ClamdError::Io(e.to_string())),
        (Ok(()), Ok(())) => Err(ClamdError::NoAnswer),
    }
}

async fn send_stream<S: AsyncWrite + Unpin>(
    stream: &mut S,
    data: &Bytes,
    chunk: usize,
) -> io::Result<()> {
    stream.write_all(b"zINSTREAM\0").await?;
    for piece in data.chunks(chunk) {
        let len = u32::try_from(piece.len()).map_err(io::Error::other)?;
        stream.write_all(&len.to_be_bytes()).await?;
        stream.write_all(piece).await?;
    }
    stream.write_all(&[0, 0, 0, 0]).await?;
    stream.flush().await
}

/// Reads until the reply's terminating NUL, end of stream, or [`MAX_REPLY`].
async fn read_reply<S: AsyncRead + Unpin>(stream: &mut S, reply: &mut Vec<u8>) -> io::Result<()> {
    let mut buf = [0u8; 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            // A reset after a complete reply still leaves the reply.
            Err(_) if reply.contains(&0) => return Ok(()),
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(());
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.contains(&0) || reply.len() >= MAX_REPLY {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse() {
        assert_eq!(ClamdAnswer::parse(b"stream: OK\0"), ClamdAnswer::Clean);
        assert_eq!(
            ClamdAnswer::parse(b"stream: Eicar-Test-Signature FOUND\0"),
            ClamdAnswer::Infected("Eicar-Test-Signature".into())
        );
        assert_eq!(
            ClamdAnswer::parse(b"stream: Win.Test.EICAR_HDB-1 FOUND\n"),
            ClamdAnswer::Infected("Win.Test.EICAR_HDB-1".into())
        );
        assert_eq!(
            ClamdAnswer::parse(b"1: stream: clam.exe.UNOFFICIAL FOUND\0"),
            ClamdAnswer::Infected("clam.exe.UNOFFICIAL".into())
        );
        assert!(matches!(
            ClamdAnswer::parse(b"INSTREAM size limit exceeded. ERROR\0"),
            ClamdAnswer::SizeLimit(_)
        ));
        assert_eq!(
            ClamdAnswer::parse(b"stream: Can't allocate memory ERROR\0"),
            ClamdAnswer::Error("stream: Can't allocate memory ERROR".into())
        );
    }

    #[test]
    fn anything_else_is_never_clean() {
        for reply in [
            &b""[..],
            b"\0",
            b"UNKNOWN COMMAND\0",
            b"stream: FOUND\0",
            b"stream: OKAY\0",
            b"stream:\0",
            b"PONG\0",
            b"stream: OK\0stream: Lib error ERROR\0",
        ] {
            let a = ClamdAnswer::parse(reply);
            assert!(
                matches!(a, ClamdAnswer::Error(_)),
                "{:?} gave {a:?}",
                String::from_utf8_lossy(reply)
            );
        }
    }

    #[test]
    fn all_match_replies_report_a_virus() {
        assert_eq!(
            ClamdAnswer::parse(b"stream: A FOUND\0stream: B FOUND\0"),
            ClamdAnswer::Infected("A".into())
        );
        assert_eq!(
            ClamdAnswer::parse(b"stream: x ERROR\0stream: B FOUND\0"),
            ClamdAnswer::Infected("B".into())
        );
    }

    #[test]
    fn addresses_parse() {
        assert_eq!(
            ClamdAddr::parse("unix:/run/clamav/clamd.ctl").unwrap(),
            ClamdAddr::Unix("/run/clamav/clamd.ctl".into())
        );
        let tcp = ClamdAddr::parse("tcp:127.0.0.1:3310").unwrap();
        assert_eq!(tcp.to_string(), "tcp:127.0.0.1:3310");
        assert_eq!(
            ClamdAddr::parse("inet:clamd.local:3310")
                .unwrap()
                .to_string(),
            "tcp:clamd.local:3310"
        );
        assert_eq!(
            ClamdAddr::parse("inet6:[::1]:3310").unwrap(),
            ClamdAddr::Tcp {
                host: "::1".into(),
                port: 3310
            }
        );
        assert_eq!(
            ClamdAddr::parse("tcp:[::1]:3310").unwrap().to_string(),
            "tcp:[::1]:3310"
        );
        for bad in [
            "clamd:3310",
            "/run/clamd.ctl",
            "unix:clamd.ctl",
            "tcp:host",
            "tcp:host:0",
            "tcp:host:99999",
            "tcp::3310",
            "tcp:::1:3310",
        ] {
            assert!(ClamdAddr::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
