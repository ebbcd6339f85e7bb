//! Content-Transfer-Encoding decoders that never fail: broken input decodes as
//! far as it goes (mail clients do the same, so the filter must see what they
//! would show).

/// Base64, leniently: characters outside the alphabet are skipped, `=` ends a
/// group, and decoding goes on after it (some senders concatenate encoded
/// chunks). Output is at most 3/4 of the input.
pub fn decode_base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut n = 0u8;
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => {
                flush_base64(&mut out, acc, n);
                acc = 0;
                n = 0;
                continue;
            }
            _ => continue,
        };
        acc = acc << 6 | v as u32;
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    flush_base64(&mut out, acc, n);
    out
}

fn flush_base64(out: &mut Vec<u8>, acc: u32, n: u8) {
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
}

/// Quoted-printable, leniently: `=XX` and soft line breaks are decoded, a stray
/// `=` is kept as it is, and blanks at the end of a line are dropped (RFC 2045).
pub fn decode_quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        match c {
            b'=' => {
                let rest = &input[i + 1..];
                if let (Some(h), Some(l)) = (
                    rest.first().and_then(|&c| hex(c)),
                    rest.get(1).and_then(|&c| hex(c)),
                ) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                // Soft line break: '=' then optional blanks then a line end.
                let blanks = rest
                    .iter()
                    .take_while(|&&c| c == b' ' || c == b'\t')
                    .count();
                match &rest[blanks..] {
                    [b'\r', b'\n', ..] => i += 1 + blanks + 2,
                    [b'\n', ..] => i += 1 + blanks + 1,
                    [] => i += 1 + blanks,
                    _ => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
            b' ' | b'\t' => {
                // Drop blanks that end a line.
                let run = input[i..]
                    .iter()
                    .take_while(|&&c| c == b' ' || c == b'\t')
                    .count();
                let after = &input[i + run..];
                if !(after.is_empty() || after.starts_with(b"\r\n") || after.starts_with(b"\n")) {
                    out.extend_from_slice(&input[i..i + run]);
                }
                i += run;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_lenient() {
        assert_eq!(decode_base64(b"TVqQAA=="), b"MZ\x90\x00");
        assert_eq!(decode_base64(b"TVq\r\n!!QAA==\r\n"), b"MZ\x90\x00");
        assert_eq!(decode_base64(b"aGk=aGk="), b"hihi");
        assert_eq!(decode_base64(b"aGV"), b"he");
        assert_eq!(decode_base64(b""), b"");
        assert_eq!(decode_base64(b"%%%"), b"");
    }

    #[test]
    fn quoted_printable_is_lenient() {
        assert_eq!(decode_quoted_printable(b"a=3Db=\r\nc"), b"a=bc");
        assert_eq!(
            decode_quoted_printable(b"x = y=ZZ  \r\nz"),
            b"x = y=ZZ\r\nz"
        );
        assert_eq!(decode_quoted_printable(b"end="), b"end");
        assert_eq!(decode_quoted_printable(b"=C3=A1"), "á".as_bytes());
    }
}
