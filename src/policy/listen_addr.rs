//! Where the milter listens, as the policy file and Postfix's `smtpd_milters`
//! write it: `inet:HOST:PORT`, `inet6:[ADDR]:PORT` or `unix:/PATH`. A value of
//! the policy: loading checks it, the server binds it (src/server/listen.rs).

use std::net::SocketAddr;
use std::path::PathBuf;

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
}
