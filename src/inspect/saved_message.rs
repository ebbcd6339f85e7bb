//! A message saved as a file (`.eml`) and attached under another content type
//! (`application/octet-stream`, `text/plain`): mail clients open it as a
//! message all the same, so the MIME walk inspects it as an attached message
//! (src/inspect/mime.rs) when its first bytes are a message's header.

/// Encoded bytes of a part decoded to look at its start.
pub const SNIFF_LEN: usize = 8 * 1024;

/// Header fields that only a message's header has together.
const MESSAGE_FIELDS: &[&str] = &[
    "date",
    "message-id",
    "subject",
    "to",
    "mime-version",
    "received",
    "return-path",
];

/// True when `start` (a part's first decoded bytes) opens with a message
/// header: header fields from the first line on, `From:` among them and at
/// least two other fields a message has (`Date`, `Message-ID`, `Subject`,
/// `To`, `MIME-Version`, `Received`, `Return-Path`).
pub fn looks_like_message(start: &[u8]) -> bool {
    let start = start.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(start);
    let mut from = false;
    let mut others = 0;
    let mut seen: Vec<&str> = Vec::new();
    for (i, line) in start.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if i == 0 {
                return false;
            }
            continue;
        }
        if i == 0 && line.starts_with(b"From ") {
            continue; // an mbox separator
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return false;
        };
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|c| (33..=126).contains(c)) {
            return false;
        }
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        if name == "from" {
            from = true;
        } else if let Some(known) = MESSAGE_FIELDS.iter().find(|f| **f == name)
            && !seen.contains(known)
        {
            seen.push(known);
            others += 1;
        }
    }
    from && others >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_header_and_not_much_else() {
        assert!(looks_like_message(
            b"Return-Path: <a@b>\r\nFrom: a@b\r\nTo: c@d\r\nSubject: x\r\n\r\nbody"
        ));
        assert!(looks_like_message(
            b"From a@b Mon Jan  1 00:00:00 2024\nFrom: a@b\nDate: x\nMessage-ID: <1@b>\n"
        ));
        // Too few fields, the same field twice, or prose first.
        assert!(!looks_like_message(b"From: a@b\r\nTo: c@d\r\n\r\n"));
        assert!(!looks_like_message(
            b"From: a@b\r\nTo: c@d\r\nTo: e@f\r\n\r\n"
        ));
        assert!(!looks_like_message(
            b"Dear all,\r\nFrom: a@b\r\nTo: c@d\r\nSubject: x\r\n"
        ));
        assert!(!looks_like_message(b"MZ\x90\x00"));
    }
}
