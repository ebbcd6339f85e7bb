//! Milter wire format: frames (`u32` big-endian length, one command byte, payload)
//! and the typed packets that travel in them.
//!
//! Two codec types share one frame reader:
//! - [`MilterCodec`] is the milter side: it decodes MTA [`Command`]s and encodes
//!   [`Reply`]s. The session uses it.
//! - [`MtaCodec`] is the MTA side: it encodes [`Command`]s and decodes [`Reply`]s.
//!   The test/load client uses it.
//!
//! A frame whose announced length is zero or exceeds the configured cap is refused
//! as soon as its 4-byte header is seen, before the payload is read or any room is
//! reserved for it. Nothing in here panics on input.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder};

/// Default cap on a frame's payload: 1 MiB. Postfix sends headers of up to
/// `header_size_limit` (100 KiB by default) in one packet, so 64 KiB is too small.
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;

/// Largest payload we ever send and the largest BODY chunk the client sends:
/// libmilter (and so Sendmail) refuses anything bigger.
pub const MAX_REPLY_PAYLOAD: usize = 65535;

/// The protocol version both Postfix 3.7 and Sendmail 8.17 speak.
pub const PROTOCOL_VERSION: u32 = 6;

/// `SMFIF_*`: what the milter may ask the MTA to change.
pub mod actions {
    pub const ADDHDRS: u32 = 0x01;
    pub const CHGBODY: u32 = 0x02;
    pub const ADDRCPT: u32 = 0x04;
    pub const DELRCPT: u32 = 0x08;
    pub const CHGHDRS: u32 = 0x10;
    pub const QUARANTINE: u32 = 0x20;
    pub const CHGFROM: u32 = 0x40;
    pub const ADDRCPT_PAR: u32 = 0x80;
    pub const SETSYMLIST: u32 = 0x100;

    /// Human names of the bits set in `mask`, for logs.
    pub fn names(mask: u32) -> Vec<&'static str> {
        const ALL: [(u32, &str); 9] = [
            (ADDHDRS, "ADDHDRS"),
            (CHGBODY, "CHGBODY"),
            (ADDRCPT, "ADDRCPT"),
            (DELRCPT, "DELRCPT"),
            (CHGHDRS, "CHGHDRS"),
            (QUARANTINE, "QUARANTINE"),
            (CHGFROM, "CHGFROM"),
            (ADDRCPT_PAR, "ADDRCPT_PAR"),
            (SETSYMLIST, "SETSYMLIST"),
        ];
        ALL.iter()
            .filter(|(bit, _)| mask & bit != 0)
            .map(|(_, n)| *n)
            .collect()
    }
}

/// `SMFIP_*`: which steps the MTA skips (`NO*`) and which replies the milter
/// omits (`NR_*`).
pub mod protocol {
    pub const NOCONNECT: u32 = 0x01;
    pub const NOHELO: u32 = 0x02;
    pub const NOMAIL: u32 = 0x04;
    pub const NORCPT: u32 = 0x08;
    pub const NOBODY: u32 = 0x10;
    pub const NOHDRS: u32 = 0x20;
    pub const NOEOH: u32 = 0x40;
    pub const NR_HDR: u32 = 0x80;
    pub const NOUNKNOWN: u32 = 0x100;
    pub const NODATA: u32 = 0x200;
    pub const SKIP: u32 = 0x400;
    pub const RCPT_REJ: u32 = 0x800;
    pub const NR_CONN: u32 = 0x1000;
    pub const NR_HELO: u32 = 0x2000;
    pub const NR_MAIL: u32 = 0x4000;
    pub const NR_RCPT: u32 = 0x8000;
    pub const NR_DATA: u32 = 0x10000;
    pub const NR_UNKN: u32 = 0x20000;
    pub const NR_EOH: u32 = 0x40000;
    pub const NR_BODY: u32 = 0x80000;
    pub const HDR_LEADSPC: u32 = 0x100000;
}

/// Stage numbers of the macro lists in the OPTNEG reply (`SMFIM_*`).
pub mod macro_stage {
    pub const CONNECT: u32 = 0;
    pub const HELO: u32 = 1;
    pub const MAIL: u32 = 2;
    pub const RCPT: u32 = 3;
    pub const DATA: u32 = 4;
    pub const EOM: u32 = 5;
    pub const EOH: u32 = 6;
}

/// Everything that can go wrong reading or writing a frame.
#[derive(Debug, Error)]
pub enum CodecError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame announces {announced} payload bytes, above the cap of {max}")]
    FrameTooLarge { announced: u64, max: usize },
    #[error("frame announces length 0 (no command byte)")]
    EmptyFrame,
    #[error("malformed '{}' packet: {detail}", char::from(*.code))]
    Malformed { code: u8, detail: &'static str },
    #[error("packet payload of {len} bytes exceeds the {max}-byte limit")]
    PayloadTooLarge { len: usize, max: usize },
    #[error("string to send contains a NUL byte")]
    NulInString,
    #[error("peer closed the connection inside a frame ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
}

/// The client's address family and address, as CONNECT carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Family {
    Inet(Ipv4Addr, u16),
    Inet6(Ipv6Addr, u16),
    /// A unix-socket client; the path (Postfix sends the port as 0).
    Unix(String),
    /// `U`: the MTA does not know; no port or address follow.
    Unknown,
}

impl From<std::net::SocketAddr> for Family {
    fn from(addr: std::net::SocketAddr) -> Self {
        match addr {
            std::net::SocketAddr::V4(a) => Family::Inet(*a.ip(), a.port()),
            std::net::SocketAddr::V6(a) => Family::Inet6(*a.ip(), a.port()),
        }
    }
}

/// A packet from the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
    },
    /// Macros for the command with code `stage` that follows (`C`, `H`, `M`, `R`,
    /// `T`, `L`, `N`, `B`, `E`, `U`, or anything else). Stage 0 stands for an empty
    /// packet without even a stage byte.
    Macro {
        stage: u8,
        pairs: Vec<(String, String)>,
    },
    Connect {
        hostname: String,
        family: Family,
    },
    Helo(String),
    /// MAIL FROM: the address token verbatim (with `<>`), then ESMTP parameters.
    Mail {
        args: Vec<String>,
    },
    Rcpt {
        args: Vec<String>,
    },
    Data,
    Header {
        name: String,
        value: String,
    },
    Eoh,
    Body(Bytes),
    Eob,
    /// An SMTP command the MTA did not recognise (Postfix: only the verb).
    Unknown(String),
    Abort,
    Quit,
    QuitNc,
    /// A command byte this implementation does not know.
    Other {
        code: u8,
        payload: Bytes,
    },
}

impl Command {
    /// The command byte on the wire.
    pub fn code(&self) -> u8 {
        match self {
            Command::OptNeg { .. } => b'O',
            Command::Macro { .. } => b'D',
            Command::Connect { .. } => b'C',
            Command::Helo(_) => b'H',
            Command::Mail { .. } => b'M',
            Command::Rcpt { .. } => b'R',
            Command::Data => b'T',
            Command::Header { .. } => b'L',
            Command::Eoh => b'N',
            Command::Body(_) => b'B',
            Command::Eob => b'E',
            Command::Unknown(_) => b'U',
            Command::Abort => b'A',
            Command::Quit => b'Q',
            Command::QuitNc => b'K',
            Command::Other { code, .. } => *code,
        }
    }
}

/// A packet from the milter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// OPTNEG answer, with optional per-stage macro lists (`SMFIM_*` stage,
    /// space-separated names).
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
        macros: Vec<(u32, String)>,
    },
    Continue,
    Accept,
    Reject,
    Tempfail,
    Discard,
    Skip,
    Progress,
    /// `4`: Postfix answers 421 and drops the SMTP client.
    Shutdown,
    /// `f`: implemented by neither MTA; here for completeness.
    ConnFail,
    /// A full SMTP reply (`550 5.7.1 text`, multi-line joined by CRLF). Holds the
    /// text as the SMTP client should see it; `%` is doubled on the wire.
    ReplyCode(String),
    AddHeader {
        name: String,
        value: String,
    },
    InsertHeader {
        index: u32,
        name: String,
        value: String,
    },
    /// Change the `index`-th (from 1) header of that name; an empty value deletes it.
    ChangeHeader {
        index: u32,
        name: String,
        value: String,
    },
    /// `e`: new envelope sender, optional ESMTP args in one space-separated string.
    ChangeFrom {
        addr: String,
        args: Option<String>,
    },
    AddRcpt(String),
    /// `2`: add a recipient with ESMTP args in one string.
    AddRcptPar {
        addr: String,
        args: Option<String>,
    },
    DelRcpt(String),
    ReplaceBody(Bytes),
    /// Hold the message; the reason must not be empty.
    Quarantine(String),
    /// A reply byte this implementation does not know.
    Other {
        code: u8,
        payload: Bytes,
    },
}

impl Reply {
    /// The reply byte on the wire.
    pub fn code(&self) -> u8 {
        match self {
            Reply::OptNeg { .. } => b'O',
            Reply::Continue => b'c',
            Reply::Accept => b'a',
            Reply::Reject => b'r',
            Reply::Tempfail => b't',
            Reply::Discard => b'd',
            Reply::Skip => b's',
            Reply::Progress => b'p',
            Reply::Shutdown => b'4',
            Reply::ConnFail => b'f',
            Reply::ReplyCode(_) => b'y',
            Reply::AddHeader { .. } => b'h',
            Reply::InsertHeader { .. } => b'i',
            Reply::ChangeHeader { .. } => b'm',
            Reply::ChangeFrom { .. } => b'e',
            Reply::AddRcpt(_) => b'+',
            Reply::AddRcptPar { .. } => b'2',
            Reply::DelRcpt(_) => b'-',
            Reply::ReplaceBody(_) => b'b',
            Reply::Quarantine(_) => b'q',
            Reply::Other { code, .. } => *code,
        }
    }

    /// True for the packets that may come before the final reply at end of
    /// message (edits and progress).
    pub fn is_eom_intermediate(&self) -> bool {
        matches!(
            self,
            Reply::AddHeader { .. }
                | Reply::InsertHeader { .. }
                | Reply::ChangeHeader { .. }
                | Reply::ChangeFrom { .. }
                | Reply::AddRcpt(_)
                | Reply::AddRcptPar { .. }
                | Reply::DelRcpt(_)
                | Reply::ReplaceBody(_)
                | Reply::Quarantine(_)
                | Reply::Progress
        )
    }

    /// Payload size this reply will have on the wire (without length and code).
    pub fn payload_len(&self) -> usize {
        let s = |x: &str| x.len() + 1;
        let opt = |x: &Option<String>| x.as_deref().map_or(0, s);
        match self {
            Reply::OptNeg { macros, .. } => {
                12 + macros.iter().map(|(_, m)| 4 + s(m)).sum::<usize>()
            }
            Reply::Continue
            | Reply::Accept
            | Reply::Reject
            | Reply::Tempfail
            | Reply::Discard
            | Reply::Skip
            | Reply::Progress
            | Reply::Shutdown
            | Reply::ConnFail => 0,
            Reply::ReplyCode(text) => text.len() + text.matches('%').count() + 1,
            Reply::AddHeader { name, value } => s(name) + s(value),
            Reply::InsertHeader { name, value, .. } | Reply::ChangeHeader { name, value, .. } => {
                4 + s(name) + s(value)
            }
            Reply::ChangeFrom { addr, args } | Reply::AddRcptPar { addr, args } => {
                s(addr) + opt(args)
            }
            Reply::AddRcpt(a) | Reply::DelRcpt(a) | Reply::Quarantine(a) => s(a),
            Reply::ReplaceBody(b) => b.len(),
            Reply::Other { payload, .. } => payload.len(),
        }
    }
}

/// Milter-side codec: decodes [`Command`]s, encodes [`Reply`]s.
#[derive(Debug, Clone)]
pub struct MilterCodec {
    max_frame: usize,
}

impl MilterCodec {
    /// `max_frame` caps the payload of incoming frames (the command byte excluded).
    pub fn new(max_frame: usize) -> Self {
        MilterCodec { max_frame }
    }

    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

impl Default for MilterCodec {
    fn default() -> Self {
        MilterCodec::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder for MilterCodec {
    type Item = Command;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Command>, CodecError> {
        match decode_frame(src, self.max_frame)? {
            Some((code, payload)) => parse_command(code, payload).map(Some),
            None => Ok(None),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Command>, CodecError> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None if src.is_empty() => Ok(None),
            None => Err(CodecError::Truncated {
                buffered: src.len(),
            }),
        }
    }
}

impl Encoder<Reply> for MilterCodec {
    type Error = CodecError;

    fn encode(&mut self, reply: Reply, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode_reply(&reply, dst)
    }
}

/// MTA-side codec: encodes [`Command`]s, decodes [`Reply`]s.
#[derive(Debug, Clone)]
pub struct MtaCodec {
    max_frame: usize,
}

impl MtaCodec {
    pub fn new(max_frame: usize) -> Self {
        MtaCodec { max_frame }
    }
}

impl Default for MtaCodec {
    fn default() -> Self {
        MtaCodec::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder for MtaCodec {
    type Item = Reply;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Reply>, CodecError> {
        match decode_frame(src, self.max_frame)? {
            Some((code, payload)) => parse_reply(code, payload).map(Some),
            None => Ok(None),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Reply>, CodecError> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None if src.is_empty() => Ok(None),
            None => Err(CodecError::Truncated {
                buffered: src.len(),
            }),
        }
    }
}

impl Encoder<Command> for MtaCodec {
    type Error = CodecError;

    fn encode(&mut self, cmd: Command, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode_command(&cmd, dst, self.max_frame)
    }
}

/// Splits one frame off `src`: `Ok(None)` until it is complete. The length is
/// checked against `max_payload` from the 4-byte header alone, so an absurd length
/// is refused before anything is reserved or read.
pub fn decode_frame(
    src: &mut BytesMut,
    max_payload: usize,
) -> Result<Option<(u8, Bytes)>, CodecError> {
    let Some(header) = src.get(..4) else {
        return Ok(None);
    };
    let announced = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if announced == 0 {
        return Err(CodecError::EmptyFrame);
    }
    let payload_len = (announced - 1) as usize;
    if payload_len > max_payload {
        return Err(CodecError::FrameTooLarge {
            announced: u64::from(announced) - 1,
            max: max_payload,
        });
    }
    let frame_len = 4 + 1 + payload_len;
    if src.len() < frame_len {
        // Bounded by the cap checked above.
        src.reserve(frame_len - src.len());
        return Ok(None);
    }
    src.advance(4);
    let code = src.get_u8();
    let payload = src.split_to(payload_len).freeze();
    Ok(Some((code, payload)))
}

/// Reads NUL-terminated strings (the last NUL may be missing) as lossy UTF-8.
fn split_strings(payload: &[u8]) -> Vec<String> {
    if payload.is_empty() {
        return Vec::new();
    }
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    body.split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// One NUL-terminated string from the front of `buf`, advancing past it.
fn take_string(buf: &mut Bytes) -> Option<String> {
    if buf.is_empty() {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let s = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.advance((end + 1).min(buf.len()));
    Some(s)
}

fn take_u32(buf: &mut Bytes, code: u8, detail: &'static str) -> Result<u32, CodecError> {
    if buf.len() < 4 {
        return Err(CodecError::Malformed { code, detail });
    }
    Ok(buf.get_u32())
}

/// Decodes the payload of an MTA command.
pub fn parse_command(code: u8, mut payload: Bytes) -> Result<Command, CodecError> {
    let cmd = match code {
        b'O' => Command::OptNeg {
            version: take_u32(&mut payload, code, "short OPTNEG")?,
            actions: take_u32(&mut payload, code, "short OPTNEG")?,
            protocol: take_u32(&mut payload, code, "short OPTNEG")?,
        },
        b'D' => {
            if payload.is_empty() {
                Command::Macro {
                    stage: 0,
                    pairs: Vec::new(),
                }
            } else {
                let stage = payload.get_u8();
                let mut strings = split_strings(&payload).into_iter();
                let mut pairs = Vec::new();
                while let Some(name) = strings.next() {
                    let value = strings.next().unwrap_or_default();
                    pairs.push((name, value));
                }
                Command::Macro { stage, pairs }
            }
        }
        b'C' => {
            let hostname = take_string(&mut payload).ok_or(CodecError::Malformed {
                code,
                detail: "CONNECT without host name",
            })?;
            if payload.is_empty() {
                return Err(CodecError::Malformed {
                    code,
                    detail: "CONNECT without address family",
                });
            }
            let family_byte = payload.get_u8();
            let family = if family_byte == b'U' {
                Family::Unknown
            } else {
                if payload.len() < 2 {
                    return Err(CodecError::Malformed {
                        code,
                        detail: "CONNECT without port",
                    });
                }
                let port = payload.get_u16();
                let addr = take_string(&mut payload).unwrap_or_default();
                match family_byte {
                    b'4' => Family::Inet(
                        addr.parse().map_err(|_| CodecError::Malformed {
                            code,
                            detail: "CONNECT with a bad IPv4 address",
                        })?,
                        port,
                    ),
                    b'6' => {
                        // Sendmail may prefix IPv6 addresses with "IPv6:".
                        let bare = addr.strip_prefix("IPv6:").unwrap_or(&addr);
                        Family::Inet6(
                            bare.parse().map_err(|_| CodecError::Malformed {
                                code,
                                detail: "CONNECT with a bad IPv6 address",
                            })?,
                            port,
                        )
                    }
                    b'L' => Family::Unix(addr),
                    _ => {
                        return Err(CodecError::Malformed {
                            code,
                            detail: "CONNECT with an unknown address family",
                        });
                    }
                }
            };
            Command::Connect { hostname, family }
        }
        b'H' => Command::Helo(take_string(&mut payload).unwrap_or_default()),
        b'M' => Command::Mail {
            args: split_strings(&payload),
        },
        b'R' => Command::Rcpt {
            args: split_strings(&payload),
        },
        b'T' => Command::Data,
        b'L' => {
            let name = take_string(&mut payload).ok_or(CodecError::Malformed {
                code,
                detail: "HEADER without name",
            })?;
            let value = take_string(&mut payload).unwrap_or_default();
            Command::Header { name, value }
        }
        b'N' => Command::Eoh,
        b'B' => Command::Body(payload),
        b'E' => {
            // libmilter would treat data here as a last body chunk; neither MTA
            // sends any, and dropping body bytes silently would be worse than
            // refusing.
            if !payload.is_empty() {
                return Err(CodecError::Malformed {
                    code,
                    detail: "BODYEOB carrying data",
                });
            }
            Command::Eob
        }
        b'U' => Command::Unknown(take_string(&mut payload).unwrap_or_default()),
        b'A' => Command::Abort,
        b'Q' => Command::Quit,
        b'K' => Command::QuitNc,
        _ => Command::Other { code, payload },
    };
    Ok(cmd)
}

/// Decodes the payload of a milter reply.
pub fn parse_reply(code: u8, mut payload: Bytes) -> Result<Reply, CodecError> {
    let reply = match code {
        b'O' => {
            let version = take_u32(&mut payload, code, "short OPTNEG reply")?;
            let actions = take_u32(&mut payload, code, "short OPTNEG reply")?;
            let protocol = take_u32(&mut payload, code, "short OPTNEG reply")?;
            let mut macros = Vec::new();
            while !payload.is_empty() {
                let stage = take_u32(&mut payload, code, "truncated macro list")?;
                let names = take_string(&mut payload).unwrap_or_default();
                macros.push((stage, names));
            }
            Reply::OptNeg {
                version,
                actions,
                protocol,
                macros,
            }
        }
        b'c' | b'a' | b'r' | b't' | b'd' | b's' | b'p' | b'4' | b'f' => {
            if !payload.is_empty() {
                return Err(CodecError::Malformed {
                    code,
                    detail: "reply that takes no data carries data",
                });
            }
            match code {
                b'c' => Reply::Continue,
                b'a' => Reply::Accept,
                b'r' => Reply::Reject,
                b't' => Reply::Tempfail,
                b'd' => Reply::Discard,
                b's' => Reply::Skip,
                b'p' => Reply::Progress,
                b'4' => Reply::Shutdown,
                _ => Reply::ConnFail,
            }
        }
        b'y' => Reply::ReplyCode(undouble_percent(
            &take_string(&mut payload).unwrap_or_default(),
        )),
        b'h' => {
            let name = take_string(&mut payload).unwrap_or_default();
            let value = take_string(&mut payload).unwrap_or_default();
            Reply::AddHeader { name, value }
        }
        b'i' | b'm' => {
            let index = take_u32(&mut payload, code, "header edit without index")?;
            let name = take_string(&mut payload).unwrap_or_default();
            let value = take_string(&mut payload).unwrap_or_default();
            if code == b'i' {
                Reply::InsertHeader { index, name, value }
            } else {
                Reply::ChangeHeader { index, name, value }
            }
        }
        b'e' | b'2' => {
            let addr = take_string(&mut payload).unwrap_or_default();
            let args = take_string(&mut payload);
            if code == b'e' {
                Reply::ChangeFrom { addr, args }
            } else {
                Reply::AddRcptPar { addr, args }
            }
        }
        b'+' => Reply::AddRcpt(take_string(&mut payload).unwrap_or_default()),
        b'-' => Reply::DelRcpt(take_string(&mut payload).unwrap_or_default()),
        b'q' => Reply::Quarantine(take_string(&mut payload).unwrap_or_default()),
        b'b' => Reply::ReplaceBody(payload),
        _ => Reply::Other { code, payload },
    };
    Ok(reply)
}

/// `%` → `%%`: both MTAs treat a lone `%` in a reply as a format directive.
pub fn double_percent(text: &str) -> String {
    text.replace('%', "%%")
}

/// `%%` → `%`, as the MTA does before showing the reply to the SMTP client.
pub fn undouble_percent(text: &str) -> String {
    text.replace("%%", "%")
}

fn put_str(dst: &mut BytesMut, s: &str) -> Result<(), CodecError> {
    if s.as_bytes().contains(&0) {
        return Err(CodecError::NulInString);
    }
    dst.put_slice(s.as_bytes());
    dst.put_u8(0);
    Ok(())
}

/// Writes length, code and payload, checking the size first and leaving `dst`
/// untouched on any error.
fn put_frame(
    dst: &mut BytesMut,
    code: u8,
    max_payload: usize,
    fill: impl FnOnce(&mut BytesMut) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let mut payload = BytesMut::new();
    fill(&mut payload)?;
    if payload.len() > max_payload {
        return Err(CodecError::PayloadTooLarge {
            len: payload.len(),
            max: max_payload,
        });
    }
    dst.reserve(5 + payload.len());
    // Cannot overflow: payload.len() <= max_payload, which callers keep far below u32::MAX.
    dst.put_u32(u32::try_from(payload.len() + 1).unwrap_or(u32::MAX));
    dst.put_u8(code);
    dst.put_slice(&payload);
    Ok(())
}

/// Encodes one reply; refuses payloads above [`MAX_REPLY_PAYLOAD`] and strings
/// with NUL bytes.
pub fn encode_reply(reply: &Reply, dst: &mut BytesMut) -> Result<(), CodecError> {
    put_frame(dst, reply.code(), MAX_REPLY_PAYLOAD, |p| {
        match reply {
            Reply::OptNeg {
                version,
                actions,
                protocol,
                macros,
            } => {
                p.put_u32(*version);
                p.put_u32(*actions);
                p.put_u32(*protocol);
                for (stage, names) in macros {
                    p.put_u32(*stage);
                    put_str(p, names)?;
                }
            }
            Reply::Continue
            | Reply::Accept
            | Reply::Reject
            | Reply::Tempfail
            | Reply::Discard
            | Reply::Skip
            | Reply::Progress
            | Reply::Shutdown
            | Reply::ConnFail => {}
            Reply::ReplyCode(text) => put_str(p, &double_percent(text))?,
            Reply::AddHeader { name, value } => {
                put_str(p, name)?;
                put_str(p, value)?;
            }
            Reply::InsertHeader { index, name, value }
            | Reply::ChangeHeader { index, name, value } => {
                p.put_u32(*index);
                put_str(p, name)?;
                put_str(p, value)?;
            }
            Reply::ChangeFrom { addr, args } | Reply::AddRcptPar { addr, args } => {
                put_str(p, addr)?;
                if let Some(args) = args {
                    put_str(p, args)?;
                }
            }
            Reply::AddRcpt(s) | Reply::DelRcpt(s) | Reply::Quarantine(s) => put_str(p, s)?,
            Reply::ReplaceBody(b) => p.put_slice(b),
            Reply::Other { payload, .. } => p.put_slice(payload),
        }
        Ok(())
    })
}

/// Encodes one command; `max_payload` is the peer's frame cap (BODY chunks should
/// stay at or below [`MAX_REPLY_PAYLOAD`] for libmilter peers).
pub fn encode_command(
    cmd: &Command,
    dst: &mut BytesMut,
    max_payload: usize,
) -> Result<(), CodecError> {
    put_frame(dst, cmd.code(), max_payload, |p| {
        match cmd {
            Command::OptNeg {
                version,
                actions,
                protocol,
            } => {
                p.put_u32(*version);
                p.put_u32(*actions);
                p.put_u32(*protocol);
            }
            Command::Macro { stage, pairs } => {
                // Stage 0 is how an empty packet without stage byte decodes.
                if *stage != 0 || !pairs.is_empty() {
                    p.put_u8(*stage);
                }
                for (name, value) in pairs {
                    put_str(p, name)?;
                    put_str(p, value)?;
                }
            }
            Command::Connect { hostname, family } => {
                put_str(p, hostname)?;
                match family {
                    Family::Inet(ip, port) => {
                        p.put_u8(b'4');
                        p.put_u16(*port);
                        put_str(p, &ip.to_string())?;
                    }
                    Family::Inet6(ip, port) => {
                        p.put_u8(b'6');
                        p.put_u16(*port);
                        put_str(p, &ip.to_string())?;
                    }
                    Family::Unix(path) => {
                        p.put_u8(b'L');
                        p.put_u16(0);
                        put_str(p, path)?;
                    }
                    Family::Unknown => p.put_u8(b'U'),
                }
            }
            Command::Helo(name) | Command::Unknown(name) => put_str(p, name)?,
            Command::Mail { args } | Command::Rcpt { args } => {
                for a in args {
                    put_str(p, a)?;
                }
            }
            Command::Header { name, value } => {
                put_str(p, name)?;
                put_str(p, value)?;
            }
            Command::Body(b) => p.put_slice(b),
            Command::Other { payload, .. } => p.put_slice(payload),
            Command::Data
            | Command::Eoh
            | Command::Eob
            | Command::Abort
            | Command::Quit
            | Command::QuitNc => {}
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(code: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
        v.push(code);
        v.extend_from_slice(payload);
        v
    }

    fn decode_one(bytes: &[u8]) -> Command {
        let mut buf = BytesMut::from(bytes);
        let cmd = MilterCodec::default()
            .decode(&mut buf)
            .expect("decodes")
            .expect("complete");
        assert!(buf.is_empty(), "frame fully consumed");
        cmd
    }

    fn encode_r(reply: Reply) -> Vec<u8> {
        let mut buf = BytesMut::new();
        MilterCodec::default()
            .encode(reply, &mut buf)
            .expect("encodes");
        buf.to_vec()
    }

    fn s(x: &str) -> String {
        x.to_owned()
    }

    #[test]
    fn decodes_optneg() {
        let mut p = Vec::new();
        p.extend_from_slice(&6u32.to_be_bytes());
        p.extend_from_slice(&0x1FFu32.to_be_bytes());
        p.extend_from_slice(&0x1FFFFFu32.to_be_bytes());
        assert_eq!(
            decode_one(&frame(b'O', &p)),
            Command::OptNeg {
                version: 6,
                actions: 0x1FF,
                protocol: 0x1FFFFF
            }
        );
        let mut buf = BytesMut::from(&frame(b'O', &p[..8])[..]);
        assert!(matches!(
            MilterCodec::default().decode(&mut buf),
            Err(CodecError::Malformed { code: b'O', .. })
        ));
    }

    #[test]
    fn decodes_macros_of_every_stage_and_empty_ones() {
        for stage in *b"CHMRTLNBEUZ" {
            let mut p = vec![stage];
            p.extend_from_slice(b"i\0ABC123\0{auth_authen}\0alice\0");
            assert_eq!(
                decode_one(&frame(b'D', &p)),
                Command::Macro {
                    stage,
                    pairs: vec![(s("i"), s("ABC123")), (s("{auth_authen}"), s("alice"))]
                }
            );
        }
        assert_eq!(
            decode_one(&frame(b'D', b"H")),
            Command::Macro {
                stage: b'H',
                pairs: vec![]
            }
        );
        assert_eq!(
            decode_one(&frame(b'D', b"")),
            Command::Macro {
                stage: 0,
                pairs: vec![]
            }
        );
        // A name without value and without final NUL.
        assert_eq!(
            decode_one(&frame(b'D', b"Mj\0mx\0i")),
            Command::Macro {
                stage: b'M',
                pairs: vec![(s("j"), s("mx")), (s("i"), s(""))]
            }
        );
    }

    #[test]
    fn decodes_connect_families() {
        assert_eq!(
            decode_one(&frame(b'C', b"client.test\x004\x30\x39192.0.2.7\0")),
            Command::Connect {
                hostname: s("client.test"),
                family: Family::Inet(Ipv4Addr::new(192, 0, 2, 7), 12345)
            }
        );
        assert_eq!(
            decode_one(&frame(b'C', b"[2001:db8::1]\x006\x00\x192001:db8::1\0")),
            Command::Connect {
                hostname: s("[2001:db8::1]"),
                family: Family::Inet6("2001:db8::1".parse().unwrap(), 25)
            }
        );
        assert_eq!(
            decode_one(&frame(b'C', b"h\x006\x00\x19IPv6:::1\0")),
            Command::Connect {
                hostname: s("h"),
                family: Family::Inet6(Ipv6Addr::LOCALHOST, 25)
            }
        );
        assert_eq!(
            decode_one(&frame(b'C', b"localhost\0L\x00\x00/run/sock\0")),
            Command::Connect {
                hostname: s("localhost"),
                family: Family::Unix(s("/run/sock"))
            }
        );
        assert_eq!(
            decode_one(&frame(b'C', b"unknown\0U")),
            Command::Connect {
                hostname: s("unknown"),
                family: Family::Unknown
            }
        );
        for bad in [
            &b""[..],
            b"host\0",
            b"host\x004\x00",
            b"host\x004\x00\x19not-an-ip\0",
            b"host\x00X\x00\x19x\0",
        ] {
            let mut buf = BytesMut::from(&frame(b'C', bad)[..]);
            assert!(
                matches!(
                    MilterCodec::default().decode(&mut buf),
                    Err(CodecError::Malformed { code: b'C', .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn decodes_envelope_and_content_commands() {
        assert_eq!(
            decode_one(&frame(b'H', b"client.test\0")),
            Command::Helo(s("client.test"))
        );
        assert_eq!(
            decode_one(&frame(b'M', b"<a@x.invalid>\0SIZE=70769\0BODY=8BITMIME\0")),
            Command::Mail {
                args: vec![s("<a@x.invalid>"), s("SIZE=70769"), s("BODY=8BITMIME")]
            }
        );
        assert_eq!(
            decode_one(&frame(b'M', b"<>\0")),
            Command::Mail {
                args: vec![s("<>")]
            }
        );
        assert_eq!(
            decode_one(&frame(b'R', b"<b@y.test>")),
            Command::Rcpt {
                args: vec![s("<b@y.test>")]
            }
        );
        assert_eq!(decode_one(&frame(b'T', b"")), Command::Data);
        assert_eq!(
            decode_one(&frame(b'L', b"Subject\0a\n\tcontinued\0")),
            Command::Header {
                name: s("Subject"),
                value: s("a\n\tcontinued")
            }
        );
        assert_eq!(
            decode_one(&frame(b'L', b"X-Empty\0")),
            Command::Header {
                name: s("X-Empty"),
                value: s("")
            }
        );
        assert_eq!(decode_one(&frame(b'N', b"")), Command::Eoh);
        assert_eq!(
            decode_one(&frame(b'B', b"line\r\n\0bin")),
            Command::Body(Bytes::from_static(b"line\r\n\0bin"))
        );
        assert_eq!(decode_one(&frame(b'E', b"")), Command::Eob);
        assert_eq!(
            decode_one(&frame(b'U', b"FOO\0")),
            Command::Unknown(s("FOO"))
        );
        assert_eq!(decode_one(&frame(b'A', b"")), Command::Abort);
        assert_eq!(decode_one(&frame(b'Q', b"")), Command::Quit);
        assert_eq!(decode_one(&frame(b'K', b"")), Command::QuitNc);
        assert_eq!(
            decode_one(&frame(b'z', b"??")),
            Command::Other {
                code: b'z',
                payload: Bytes::from_static(b"??")
            }
        );
    }

    #[test]
    fn strings_are_lossy_utf8() {
        assert_eq!(
            decode_one(&frame(b'H', b"caf\xe9\0")),
            Command::Helo(s("caf\u{fffd}"))
        );
    }

    #[test]
    fn eob_with_data_is_refused() {
        let mut buf = BytesMut::from(&frame(b'E', b"tail")[..]);
        assert!(MilterCodec::default().decode(&mut buf).is_err());
    }

    #[test]
    fn encodes_simple_replies_exactly() {
        for (reply, code) in [
            (Reply::Continue, b'c'),
            (Reply::Accept, b'a'),
            (Reply::Reject, b'r'),
            (Reply::Tempfail, b't'),
            (Reply::Discard, b'd'),
            (Reply::Skip, b's'),
            (Reply::Progress, b'p'),
            (Reply::Shutdown, b'4'),
            (Reply::ConnFail, b'f'),
        ] {
            assert_eq!(encode_r(reply), vec![0, 0, 0, 1, code]);
        }
    }

    #[test]
    fn encodes_optneg_with_macro_lists() {
        let bytes = encode_r(Reply::OptNeg {
            version: 6,
            actions: 0x31,
            protocol: 0x2,
            macros: vec![(0, s("j {client_addr}")), (5, s("i"))],
        });
        let mut want = frame(b'O', &[0, 0, 0, 6, 0, 0, 0, 0x31, 0, 0, 0, 2, 0, 0, 0, 0]);
        want.extend_from_slice(b"j {client_addr}\0");
        want.extend_from_slice(&[0, 0, 0, 5, b'i', 0]);
        let len = (want.len() - 4) as u32;
        want[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(bytes, want);
    }

    #[test]
    fn encodes_edits_exactly() {
        assert_eq!(
            encode_r(Reply::AddHeader {
                name: s("X-A"),
                value: s("v")
            }),
            frame(b'h', b"X-A\0v\0")
        );
        assert_eq!(
            encode_r(Reply::InsertHeader {
                index: 0,
                name: s("X-A"),
                value: s("v")
            }),
            frame(b'i', b"\0\0\0\0X-A\0v\0")
        );
        assert_eq!(
            encode_r(Reply::ChangeHeader {
                index: 2,
                name: s("Subject"),
                value: s("")
            }),
            frame(b'm', b"\0\0\0\x02Subject\0\0")
        );
        assert_eq!(
            encode_r(Reply::ChangeFrom {
                addr: s("<a@x>"),
                args: Some(s("RET=HDRS ENVID=1"))
            }),
            frame(b'e', b"<a@x>\0RET=HDRS ENVID=1\0")
        );
        assert_eq!(
            encode_r(Reply::AddRcptPar {
                addr: s("<b@y>"),
                args: None
            }),
            frame(b'2', b"<b@y>\0")
        );
        assert_eq!(
            encode_r(Reply::AddRcpt(s("<c@z>"))),
            frame(b'+', b"<c@z>\0")
        );
        assert_eq!(
            encode_r(Reply::DelRcpt(s("<c@z>"))),
            frame(b'-', b"<c@z>\0")
        );
        assert_eq!(
            encode_r(Reply::ReplaceBody(Bytes::from_static(b"x\r\n"))),
            frame(b'b', b"x\r\n")
        );
        assert_eq!(
            encode_r(Reply::Quarantine(s("held"))),
            frame(b'q', b"held\0")
        );
    }

    #[test]
    fn reply_code_doubles_percent_and_keeps_multi_line() {
        assert_eq!(
            encode_r(Reply::ReplyCode(s("550 5.7.1 100% sure"))),
            frame(b'y', b"550 5.7.1 100%% sure\0")
        );
        assert_eq!(
            encode_r(Reply::ReplyCode(s("550-5.7.1 one\r\n550 5.7.1 two %%"))),
            frame(b'y', b"550-5.7.1 one\r\n550 5.7.1 two %%%%\0")
        );
        let mut buf = BytesMut::from(&frame(b'y', b"451 4.7.1 50%% off\0")[..]);
        assert_eq!(
            MtaCodec::default().decode(&mut buf).unwrap(),
            Some(Reply::ReplyCode(s("451 4.7.1 50% off")))
        );
    }

    #[test]
    fn refuses_oversized_replies_and_nul_in_strings() {
        let mut buf = BytesMut::new();
        let big = "x".repeat(MAX_REPLY_PAYLOAD);
        assert!(matches!(
            MilterCodec::default().encode(Reply::ReplyCode(big), &mut buf),
            Err(CodecError::PayloadTooLarge { .. })
        ));
        assert!(matches!(
            MilterCodec::default().encode(
                Reply::AddHeader {
                    name: s("X\0"),
                    value: s("v")
                },
                &mut buf
            ),
            Err(CodecError::NulInString)
        ));
        assert!(buf.is_empty(), "nothing written on error");
        let fits = "x".repeat(MAX_REPLY_PAYLOAD - 1);
        MilterCodec::default()
            .encode(Reply::ReplyCode(fits), &mut buf)
            .unwrap();
        assert_eq!(buf.len(), 5 + MAX_REPLY_PAYLOAD);
    }

    #[test]
    fn oversized_frame_is_refused_from_header_alone() {
        let mut codec = MilterCodec::new(1024);
        let mut buf = BytesMut::with_capacity(8);
        buf.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::FrameTooLarge { .. })
        ));
        assert!(buf.capacity() < 1024, "no room reserved for the payload");
        // Exactly the cap is fine, one more is not.
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&1025u32.to_be_bytes());
        assert!(matches!(codec.decode(&mut buf), Ok(None)));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&1026u32.to_be_bytes());
        assert!(codec.decode(&mut buf).is_err());
    }

    #[test]
    fn default_cap_accepts_one_mib_header() {
        let value = "v".repeat(DEFAULT_MAX_FRAME - 3);
        let mut payload = b"X\0".to_vec();
        payload.extend_from_slice(value.as_bytes());
        payload.push(0);
        assert_eq!(payload.len(), DEFAULT_MAX_FRAME);
        assert_eq!(
            decode_one(&frame(b'L', &payload)),
            Command::Header {
                name: s("X"),
                value
            }
        );
    }

    #[test]
    fn zero_length_frame_is_refused() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert!(matches!(
            MilterCodec::default().decode(&mut buf),
            Err(CodecError::EmptyFrame)
        ));
    }

    #[test]
    fn truncated_frame_waits_for_more() {
        let full = frame(b'H', b"client.test\0");
        let mut codec = MilterCodec::default();
        let mut buf = BytesMut::new();
        for (i, &b) in full.iter().enumerate() {
            if i > 0 {
                assert_eq!(codec.decode(&mut buf).unwrap(), None, "at {i}");
            }
            buf.put_u8(b);
        }
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Command::Helo(s("client.test")))
        );
    }

    #[test]
    fn truncated_frame_at_eof_is_reported() {
        let mut codec = MilterCodec::default();
        let mut buf = BytesMut::from(&frame(b'H', b"client")[..7]);
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(CodecError::Truncated { buffered: 7 })
        ));
        let mut empty = BytesMut::new();
        assert_eq!(codec.decode_eof(&mut empty).unwrap(), None);
    }

    #[test]
    fn decodes_reply_kinds_client_side() {
        let mut codec = MtaCodec::default();
        let mut buf = BytesMut::from(&frame(b'a', b"")[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Reply::Accept));
        let mut buf = BytesMut::from(&frame(b'c', b"junk")[..]);
        assert!(codec.decode(&mut buf).is_err(), "data after a bare reply");
        let mut buf = BytesMut::from(&frame(b'Z', b"??")[..]);
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Reply::Other {
                code: b'Z',
                payload: Bytes::from_static(b"??")
            })
        );
    }

    #[test]
    fn encodes_commands_exactly() {
        let enc = |c: Command| {
            let mut b = BytesMut::new();
            MtaCodec::default().encode(c, &mut b).unwrap();
            b.to_vec()
        };
        assert_eq!(
            enc(Command::Connect {
                hostname: s("h"),
                family: Family::Inet(Ipv4Addr::new(192, 0, 2, 7), 25)
            }),
            frame(b'C', b"h\x004\x00\x19192.0.2.7\0")
        );
        assert_eq!(
            enc(Command::Macro {
                stage: b'C',
                pairs: vec![(s("j"), s("mx"))]
            }),
            frame(b'D', b"Cj\0mx\0")
        );
        assert_eq!(
            enc(Command::Mail {
                args: vec![s("<a@x>"), s("SIZE=1")]
            }),
            frame(b'M', b"<a@x>\0SIZE=1\0")
        );
        assert_eq!(enc(Command::Eob), frame(b'E', b""));
        assert_eq!(enc(Command::QuitNc), frame(b'K', b""));
    }

    fn any_string() -> impl Strategy<Value = String> {
        "[^\u{0}]{0,40}"
    }

    fn any_command() -> impl Strategy<Value = Command> {
        prop_oneof![
            (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(version, actions, protocol)| {
                Command::OptNeg {
                    version,
                    actions,
                    protocol,
                }
            }),
            (
                1u8..=255,
                prop::collection::vec((any_string(), any_string()), 0..4)
            )
                .prop_map(|(stage, pairs)| Command::Macro { stage, pairs }),
            (any_string(), any::<[u8; 4]>(), any::<u16>()).prop_map(|(hostname, ip, port)| {
                Command::Connect {
                    hostname,
                    family: Family::Inet(Ipv4Addr::from(ip), port),
                }
            }),
            (any_string(), any::<[u8; 16]>(), any::<u16>()).prop_map(|(hostname, ip, port)| {
                Command::Connect {
                    hostname,
                    family: Family::Inet6(Ipv6Addr::from(ip), port),
                }
            }),
            (any_string(), any_string()).prop_map(|(hostname, p)| Command::Connect {
                hostname,
                family: Family::Unix(p)
            }),
            any_string().prop_map(|hostname| Command::Connect {
                hostname,
                family: Family::Unknown
            }),
            any_string().prop_map(Command::Helo),
            prop::collection::vec(any_string(), 0..4).prop_map(|args| Command::Mail { args }),
            prop::collection::vec(any_string(), 0..4).prop_map(|args| Command::Rcpt { args }),
            Just(Command::Data),
            (any_string(), any_string()).prop_map(|(name, value)| Command::Header { name, value }),
            Just(Command::Eoh),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| Command::Body(Bytes::from(b))),
            Just(Command::Eob),
            any_string().prop_map(Command::Unknown),
            Just(Command::Abort),
            Just(Command::Quit),
            Just(Command::QuitNc),
        ]
    }

    fn any_reply() -> impl Strategy<Value = Reply> {
        prop_oneof![
            (
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                prop::collection::vec((0u32..8, any_string()), 0..4)
            )
                .prop_map(|(version, actions, protocol, macros)| Reply::OptNeg {
                    version,
                    actions,
                    protocol,
                    macros
                }),
            Just(Reply::Continue),
            Just(Reply::Accept),
            Just(Reply::Reject),
            Just(Reply::Tempfail),
            Just(Reply::Discard),
            Just(Reply::Skip),
            Just(Reply::Progress),
            Just(Reply::Shutdown),
            Just(Reply::ConnFail),
            // Text with `%` but no `%%` run that would be ambiguous after doubling
            // is a perfect round trip; "%%" itself also survives (→ "%%%%" → "%%").
            "[^\u{0}]{0,60}".prop_map(Reply::ReplyCode),
            (any_string(), any_string()).prop_map(|(name, value)| Reply::AddHeader { name, value }),
            (any::<u32>(), any_string(), any_string())
                .prop_map(|(index, name, value)| Reply::InsertHeader { index, name, value }),
            (any::<u32>(), any_string(), any_string())
                .prop_map(|(index, name, value)| Reply::ChangeHeader { index, name, value }),
            (any_string(), prop::option::of(any_string()))
                .prop_map(|(addr, args)| Reply::ChangeFrom { addr, args }),
            (any_string(), prop::option::of(any_string()))
                .prop_map(|(addr, args)| Reply::AddRcptPar { addr, args }),
            any_string().prop_map(Reply::AddRcpt),
            any_string().prop_map(Reply::DelRcpt),
            prop::collection::vec(any::<u8>(), 0..300)
                .prop_map(|b| Reply::ReplaceBody(Bytes::from(b))),
            any_string().prop_map(Reply::Quarantine),
        ]
    }

    proptest! {
        #[test]
        fn command_round_trip(cmd in any_command()) {
            let mut buf = BytesMut::new();
            MtaCodec::default().encode(cmd.clone(), &mut buf).unwrap();
            let got = MilterCodec::default().decode(&mut buf).unwrap();
            prop_assert_eq!(got, Some(cmd));
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn reply_round_trip(reply in any_reply()) {
            let mut buf = BytesMut::new();
            MilterCodec::default().encode(reply.clone(), &mut buf).unwrap();
            prop_assert_eq!(buf.len(), 5 + reply.payload_len());
            let got = MtaCodec::default().decode(&mut buf).unwrap();
            prop_assert!(buf.is_empty());
            // A `ChangeFrom`/`AddRcptPar` with empty args string decodes as Some("").
            prop_assert_eq!(got, Some(reply));
        }

        #[test]
        fn arbitrary_bytes_never_panic_nor_overreserve(
            data in prop::collection::vec(any::<u8>(), 0..2048),
            cap in 0usize..4096,
        ) {
            let mut codec = MilterCodec::new(cap);
            let mut mta = MtaCodec::new(cap);
            let mut buf = BytesMut::from(&data[..]);
            let mut buf2 = buf.clone();
            // Decode until an error or a need for more data.
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
            while let Ok(Some(_)) = mta.decode(&mut buf2) {}
            // A reservation is at most one frame (header + cap), and BytesMut may
            // at most double what it already had.
            let bound = 2 * (data.len() + 5 + cap) + 64;
            prop_assert!(buf.capacity() <= bound, "capacity {} > {}", buf.capacity(), bound);
            prop_assert!(buf2.capacity() <= bound);
        }
    }
}
