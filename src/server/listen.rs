//! Listener addresses in Postfix notation and the sockets behind them.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Where the milter listens: `inet:HOST:PORT`, `inet6:[ADDR]:PORT` or
/// `unix:/PATH`, as Postfix's `smtpd_milters` names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl ListenAddr {
    pub fn parse(text: &str) -> Result<ListenAddr, String> {
        let text = text.trim();
        if let Some(path) = text
            .strip_prefix("unix:")
            .or_else(|| text.strip_prefix("local:"))
        {
            if !path.starts_with('/') {
                return Err(format!("{text:?}: a unix socket needs an absolute path"));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        let rest = text
            .strip_prefix("inet6:")
            .or_else(|| text.strip_prefix("inet:"))
            .ok_or_else(|| {
                format!("{text:?}: use inet:HOST:PORT, inet6:[ADDR]:PORT or unix:/PATH")
            })?;
        // Postfix also writes inet:PORT@HOST (Sendmail style).
        let candidate = match rest.split_once('@') {
            Some((port, host)) => format!("{host}:{port}"),
            None => rest.to_owned(),
        };
        let candidate = candidate.replace("localhost:", "127.0.0.1:");
        candidate
            .parse::<SocketAddr>()
            .map(ListenAddr::Tcp)
            .map_err(|_| {
                format!("{text:?}: expected an IP address and a port, e.g. inet:127.0.0.1:8891")
            })
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) if a.is_ipv6() => write!(f, "inet6:{a}"),
            ListenAddr::Tcp(a) => write!(f, "inet:{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A bound milter socket.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds a socket. For a unix socket: a stale socket file left by an earlier
    /// run is replaced (any other kind of file is an error), and the mode and group
    /// are applied so that Postfix can connect.
    pub async fn bind(addr: &ListenAddr, mode: &str, group: Option<&str>) -> io::Result<Listener> {
        match addr {
            ListenAddr::Tcp(a) => Ok(Listener::Tcp(TcpListener::bind(a).await?)),
            ListenAddr::Unix(path) => {
                remove_stale_socket(path)?;
                let listener = UnixListener::bind(path)?;
                let mode = u32::from_str_radix(mode.trim_start_matches("0o"), 8)
                    .map_err(|_| io::Error::other(format!("bad socket mode {mode:?}")))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
                if let Some(group) = group {
                    let gid = nix::unistd::Group::from_name(group)
                        .map_err(io::Error::other)?
                        .ok_or_else(|| io::Error::other(format!("no group named {group:?}")))?
                        .gid;
                    std::os::unix::fs::chown(path, None, Some(gid.as_raw()))?;
                }
                Ok(Listener::Unix(listener, path.clone()))
            }
        }
    }

    /// Accepts one connection; the string names the peer for logs.
    pub async fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                // Replies are small and latency matters more than packing.
                let _ = s.set_nodelay(true);
                Ok((Stream::Tcp(s), peer.to_string()))
            }
            Listener::Unix(l, path) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), format!("unix:{}", path.display())))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::other(format!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A connection from the MTA, over TCP or a unix socket.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_notations_parse() {
        assert_eq!(
            ListenAddr::parse("inet:127.0.0.1:8891").unwrap(),
            ListenAddr::Tcp("127.0.0.1:8891".parse().unwrap())
        );
        assert_eq!(
            ListenAddr::parse("inet6:[::1]:8891").unwrap(),
            ListenAddr::Tcp("[::1]:8891".parse().unwrap())
        );
        assert_eq!(
            ListenAddr::parse("inet:8891@127.0.0.1").unwrap(),
            ListenAddr::Tcp("127.0.0.1:8891".parse().unwrap())
        );
        assert_eq!(
            ListenAddr::parse("unix:/run/m.sock").unwrap(),
            ListenAddr::Unix("/run/m.sock".into())
        );
        assert!(ListenAddr::parse("unix:relative").is_err());
        assert!(ListenAddr::parse("tcp:1.2.3.4:5").is_err());
        assert!(ListenAddr::parse("inet:nohost").is_err());
    }

    #[tokio::test]
    async fn stale_unix_socket_is_replaced_and_mode_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sock");
        let addr = ListenAddr::Unix(path.clone());
        let first = Listener::bind(&addr, "0600", None).await.unwrap();
        std::mem::forget(first); // leaves the socket file behind, as a crash would
        let _second = Listener::bind(&addr, "0660", None).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
    }

    #[tokio::test]
    async fn a_regular_file_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-socket");
        std::fs::write(&path, b"keep me").unwrap();
        assert!(
            Listener::bind(&ListenAddr::Unix(path.clone()), "0660", None)
                .await
                .is_err()
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
    }
}
