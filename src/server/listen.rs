//! The sockets behind the policy's listen addresses (`crate::policy::ListenAddr`).
//!
//! Over TCP, the daemon must never wait on the TCP stack. Replies leave at once
//! (TCP_NODELAY; end-of-message replies go out in one flush), and every read
//! re-arms TCP_QUICKACK, which Linux clears again after a few segments: Postfix
//! writes some milter packets without waiting for an answer, and a delayed ACK
//! from the milter's host then holds Postfix's next write back by up to 40 ms (the
//! Nagle / delayed-ACK stall). With 8 SMTP sessions of small mail, every milter
//! reached over loopback TCP was held to about 175 messages/s by it, where the
//! same milter on a unix socket did 630.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::policy::ListenAddr;

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
                quick_ack(&s);
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
            Stream::Tcp(s) => {
                let before = buf.filled().len();
                let read = Pin::new(&mut *s).poll_read(cx, buf);
                if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                    quick_ack(s);
                }
                read
            }
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

/// Asks the kernel to acknowledge what arrives on this connection at once
/// instead of delaying the ACK (see the module doc). Best effort: a failure only
/// costs speed.
fn quick_ack(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
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
    async fn every_read_over_tcp_re_arms_quick_ack() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = Listener::bind(
            &ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()),
            "0660",
            None,
        )
        .await
        .unwrap();
        let Listener::Tcp(tcp) = &listener else {
            unreachable!()
        };
        let mut client = TcpStream::connect(tcp.local_addr().unwrap()).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let sock = |s: &Stream| match s {
            Stream::Tcp(t) => socket2::SockRef::from(t).tcp_quickack().unwrap(),
            Stream::Unix(_) => unreachable!(),
        };
        let clear = |s: &Stream| match s {
            Stream::Tcp(t) => socket2::SockRef::from(t).set_tcp_quickack(false).unwrap(),
            Stream::Unix(_) => unreachable!(),
        };
        assert!(sock(&server), "armed at accept");
        for round in 0..3 {
            // What Linux does after a few segments: quick ACKs off again.
            clear(&server);
            assert!(!sock(&server));
            client.write_all(b"frame").await.unwrap();
            let mut got = [0u8; 5];
            server.read_exact(&mut got).await.unwrap();
            assert!(sock(&server), "re-armed after read {round}");
        }
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
