//! Content-Transfer-Encoding decoders that never fail: broken input decodes as
//! far as it goes (mail clients do the same, so the filter must see what they
//! would show).

/// Base64, leniently: characters outside the alphabet are skipped, `=` ends a
/// group, and decoding goes on after it (some senders concatenate encoded
/// chunks). Output is at most 3/4 of the input.
///
/// The alphabet is RFC 2045's (`A-Z a-z 0-9 + /`) and nothing else: the URL-safe
/// `-` and `_` are skipped like any other junk, as mail readers (mail-parser,
/// Thunderbird) skip them. Taken as symbols, one `_` inserted into a body would
/// shift every byte after it, and the filter would inspect other bytes than the
/// reader shows.
///
/// Mail wraps base64 in lines of the standard alphabet. The symbols of many
/// lines (line ends and trailing blanks removed, which the lenient decoder would
/// skip anyway) are gathered into a block and decoded by base64-simd; a block
/// it refuses (junk, `-` or `_`, a `=` inside) goes to the lenient
/// decoder instead. Either way the result is the lenient decoder's on the whole
/// input.
pub fn decode_base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    decode_base64_into(input, &mut out);
    out
}

/// [`decode_base64`], appending to `out` (an encoded word's payload goes
/// straight into the bytes of the words before it).
pub fn decode_base64_into(input: &[u8], out: &mut Vec<u8>) {
    /// Symbols decoded per block: small enough to stay in the L2 cache.
    const BLOCK: usize = 32 * 1024;
    out.reserve(input.len() / 4 * 3 + 3);
    let mut lenient = LenientBase64::default();
    let mut block = Vec::with_capacity(input.len().min(BLOCK) + 128);
    // Length of the last line with its line end: most lines have the same, so
    // looking for the next line end there first spares a search per line.
    let mut line_len: usize = 0;
    let mut rest = input;
    while !rest.is_empty() {
        let end = match rest.get(line_len.wrapping_sub(1)) {
            Some(b'\n') => line_len,
            _ => memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1),
        };
        line_len = end;
        let (line, next) = rest.split_at(end);
        rest = next;
        let symbols_end = line
            .iter()
            .rposition(|c| !matches!(c, b'\n' | b'\r' | b' ' | b'\t'))
            .map_or(0, |i| i + 1);
        block.extend_from_slice(&line[..symbols_end]);
        if block.len() >= BLOCK || rest.is_empty() {
            let whole = if rest.is_empty() {
                block.len()
            } else {
                block.len() / 4 * 4
            };
            let decoded_fast = lenient.pending == 0
                && base64_simd::STANDARD
                    .decode_append(&block[..whole], &mut *out)
                    .is_ok();
            if !decoded_fast {
                lenient.feed(&block[..whole], out);
            }
            block.drain(..whole);
        }
    }
    lenient.finish(out);
}

/// The byte-at-a-time decoder for whatever the fast path refuses: a partial
/// group of `pending` symbols in `acc` carries over from one call to the next.
#[derive(Default)]
struct LenientBase64 {
    acc: u32,
    pending: u8,
}

impl LenientBase64 {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() {
            if self.pending == 0 {
                // Whole groups of four symbols at a time; anything else (line
                // ends, `=`, junk) takes the byte-at-a-time path below.
                while let Some(group) = input.get(i..i + 4) {
                    let [a, b, c, d] = [
                        BASE64[group[0] as usize],
                        BASE64[group[1] as usize],
                        BASE64[group[2] as usize],
                        BASE64[group[3] as usize],
                    ];
                    if (a | b | c | d) & 0xC0 != 0 {
                        break;
                    }
                    let v = (a as u32) << 18 | (b as u32) << 12 | (c as u32) << 6 | d as u32;
                    out.extend_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
                    i += 4;
                }
                if i >= input.len() {
                    break;
                }
            }
            let v = BASE64[input[i] as usize];
            i += 1;
            match v {
                PAD => self.finish(out),
                SKIP => {}
                _ => {
                    self.acc = self.acc << 6 | v as u32;
                    self.pending += 1;
                    if self.pending == 4 {
                        let acc = self.acc;
                        out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
                        *self = LenientBase64::default();
                    }
                }
            }
        }
    }

    /// Ends the current group (at `=` or the end of the input): the whole bytes
    /// its symbols hold.
    fn finish(&mut self, out: &mut Vec<u8>) {
        flush_base64(out, self.acc, self.pending);
        *self = LenientBase64::default();
    }
}

/// Not in the alphabet: skipped.
const SKIP: u8 = 0xFF;
/// `=`: ends a group.
const PAD: u8 = 0xFE;

/// Symbol values of the RFC 2045 alphabet; valid values are below 64, so
/// `& 0xC0` tells a symbol from anything else.
static BASE64: [u8; 256] = {
    let mut t = [SKIP; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        t[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    t[b'+' as usize] = 62;
    t[b'/' as usize] = 63;
    t[b'=' as usize] = PAD;
    t
};

fn flush_base64(out: &mut Vec<u8>, acc: u32, n: u8) {
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
}

/// Quoted-printable, leniently: `=XX` and soft line breaks are decoded, a stray
/// `=` is kept as it is, and blanks at the end of a line are dropped (RFC 2045).
///
/// Text between one `=` or line end and the next is copied whole: an attached
/// message is decoded once per encoded level above its parts, so this runs at
/// memchr speed on text that has nothing to decode.
pub fn decode_quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let next = memchr::memchr2(b'=', b'\n', &input[i..]).map_or(input.len(), |k| i + k);
        let text = &input[i..next];
        if next < input.len() && input[next] == b'=' {
            // Blanks before a '=' are not at the end of a line.
            out.extend_from_slice(text);
            let rest = &input[next + 1..];
            if let (Some(h), Some(l)) = (
                rest.first().and_then(|&c| hex(c)),
                rest.get(1).and_then(|&c| hex(c)),
            ) {
                out.push(h << 4 | l);
                i = next + 3;
                continue;
            }
            // Soft line break: '=' then optional blanks then a line end.
            let blanks = rest
                .iter()
                .take_while(|&&c| c == b' ' || c == b'\t')
                .count();
            i = match &rest[blanks..] {
                [b'\r', b'\n', ..] => next + 1 + blanks + 2,
                [b'\n', ..] => next + 1 + blanks + 1,
                [] => next + 1 + blanks,
                _ => {
                    out.push(b'=');
                    next + 1
                }
            };
            continue;
        }
        // The end of a line (or of the input): its trailing blanks go.
        let at_line_end = next < input.len();
        let (line, cr) = match text.strip_suffix(b"\r") {
            Some(line) if at_line_end => (line, &b"\r"[..]),
            _ => (text, &b""[..]),
        };
        let kept = line.len()
            - line
                .iter()
                .rev()
                .take_while(|&&c| c == b' ' || c == b'\t')
                .count();
        out.extend_from_slice(&line[..kept]);
        out.extend_from_slice(cr);
        if at_line_end {
            out.push(b'\n');
        }
        i = next + 1;
    }
    out
}

pub(crate) fn hex(c: u8) -> Option<u8> {
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
    fn url_safe_symbols_are_skipped_like_other_junk() {
        // "MZ\x90\x00" with `_` and `-` inserted: skipped, not read as `/` and `+`.
        assert_eq!(decode_base64(b"TV_qQAA=="), b"MZ\x90\x00");
        assert_eq!(decode_base64(b"T-VqQ_AA=="), b"MZ\x90\x00");
        // On the fast path's scale too: one `_` in a long body shifts nothing.
        let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        let mut encoded = base64_simd::STANDARD.encode_to_string(&data).into_bytes();
        encoded.insert(5, b'_');
        encoded.insert(60_000, b'-');
        assert_eq!(decode_base64(&encoded), data);
    }

    /// The byte-at-a-time decoder the fast one replaced: the reference.
    fn reference_base64(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let (mut acc, mut n) = (0u32, 0u8);
        for &c in input {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' => {
                    flush_base64(&mut out, acc, n);
                    (acc, n) = (0, 0);
                    continue;
                }
                _ => continue,
            };
            acc = acc << 6 | v as u32;
            n += 1;
            if n == 4 {
                out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
                (acc, n) = (0, 0);
            }
        }
        flush_base64(&mut out, acc, n);
        out
    }

    #[test]
    fn base64_fast_path_matches_the_reference() {
        let alphabet =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_\r\n !*\t";
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for len in 0..300 {
            for _ in 0..20 {
                let input: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        // Mostly symbols, some line ends, pads and junk.
                        let r = (seed % 1000) as usize;
                        if r < 940 {
                            alphabet[r % 64]
                        } else {
                            alphabet[64 + r % (alphabet.len() - 64)]
                        }
                    })
                    .collect();
                assert_eq!(decode_base64(&input), reference_base64(&input), "{input:?}");
            }
        }
    }

    /// Mail-shaped input: base64 of random bytes wrapped at 76 (or at a random
    /// width), CRLF or LF, with some lines damaged the ways senders damage them.
    /// Every line shape must decode exactly as the lenient reference does.
    #[test]
    fn wrapped_base64_matches_the_reference() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for case in 0..400 {
            let data: Vec<u8> = (0..next() % 2000).map(|_| next() as u8).collect();
            let encoded = base64_simd::STANDARD.encode_to_string(&data);
            let width = if case % 3 == 0 {
                1 + next() as usize % 90
            } else {
                76
            };
            let (mut input, mut damaged) = (Vec::new(), false);
            for line in encoded.as_bytes().chunks(width) {
                let mut line = line.to_vec();
                let damage = next() % 40;
                damaged |= damage < 3 || damage == 4;
                match damage {
                    0 => line.insert(next() as usize % (line.len() + 1), b'!'),
                    1 => line
                        .iter_mut()
                        .filter(|c| **c == b'+')
                        .for_each(|c| *c = b'-'),
                    2 => line.insert(next() as usize % (line.len() + 1), b'='),
                    3 => line.push(b' '),
                    4 => line.clear(),
                    _ => {}
                }
                input.extend_from_slice(&line);
                input.extend_from_slice(if case % 2 == 0 { b"\r\n" } else { b"\n" });
            }
            assert_eq!(decode_base64(&input), reference_base64(&input), "{input:?}");
            if !damaged {
                assert_eq!(decode_base64(&input), data);
            }
        }
    }

    #[test]
    fn a_refused_fast_line_leaves_no_partial_output() {
        let mut out = b"kept".to_vec();
        assert!(
            base64_simd::STANDARD
                .decode_append(b"QUJD!EVG", &mut out)
                .is_err()
        );
        assert_eq!(out, b"kept");
    }

    /// The byte-at-a-time decoder before text was copied whole: the reference.
    fn reference_quoted_printable(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < input.len() {
            match input[i] {
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
                    let run = input[i..]
                        .iter()
                        .take_while(|&&c| c == b' ' || c == b'\t')
                        .count();
                    let after = &input[i + run..];
                    if !(after.is_empty() || after.starts_with(b"\r\n") || after.starts_with(b"\n"))
                    {
                        out.extend_from_slice(&input[i..i + run]);
                    }
                    i += run;
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        out
    }

    #[test]
    fn quoted_printable_matches_the_reference() {
        let alphabet = b" \t=\r\n3DAax_";
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for len in 0..200 {
            for _ in 0..50 {
                let input: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        alphabet[(seed % alphabet.len() as u64) as usize]
                    })
                    .collect();
                assert_eq!(
                    decode_quoted_printable(&input),
                    reference_quoted_printable(&input),
                    "{:?}",
                    String::from_utf8_lossy(&input)
                );
            }
        }
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
