//! Messages for tests: base64, CRLF line ends, a text part with one attachment.

/// Base64 with 76-character CRLF lines.
pub fn base64_lines(data: &[u8]) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(data.len() * 4 / 3 + data.len() / 38 + 4);
    let mut line = 0;
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63]);
        out.push(T[(n >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63]
        } else {
            b'='
        });
        line += 4;
        if line >= 76 {
            out.extend_from_slice(b"\r\n");
            line = 0;
        }
    }
    if line > 0 {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Text with LF line ends turned into CRLF (existing CRLF kept).
pub fn crlf(text: &str) -> Vec<u8> {
    text.replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

/// A message from `from` to `to` with a short text part and one base64
/// attachment named `name`.
pub fn with_attachment(
    from: &str,
    to: &str,
    name: &str,
    content_type: &str,
    data: &[u8],
) -> Vec<u8> {
    let id = format!("test-{}@example.org", data.len());
    with_attachment_and_id(from, to, &id, name, content_type, data)
}

/// [`with_attachment`] with the Message-ID `<id>`.
pub fn with_attachment_and_id(
    from: &str,
    to: &str,
    id: &str,
    name: &str,
    content_type: &str,
    data: &[u8],
) -> Vec<u8> {
    let mut m = crlf(&format!(
        "From: {from}\nTo: {to}\nSubject: ho so\nMessage-ID: <{id}>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"XyZ\"\n\n--XyZ\nContent-Type: text/plain; charset=utf-8\n\nXem tep dinh kem.\n--XyZ\nContent-Type: {content_type}; name=\"{name}\"\nContent-Disposition: attachment; filename=\"{name}\"\nContent-Transfer-Encoding: base64\n\n"
    ));
    m.extend_from_slice(&base64_lines(data));
    m.extend_from_slice(b"--XyZ--\r\n");
    m
}
