//! BinHex 4.0 (`.hqx`): a Macintosh file (name, data fork, resource fork) as
//! text, still decoded by StuffIt Expander and some mail clients. The data
//! fork, under the file's name, goes to the sink like an archive entry; the
//! resource fork is Mac-only and is not inspected.
//!
//! Format (RFC 1741): after the `(This file must be converted with BinHex`
//! line, text between two `:` in a 64-symbol alphabet (line ends skipped), run
//! length encoded with 0x90, holding a header (name, type, creator, flags, fork
//! lengths, CRC), the data fork and the resource fork, each with a CRC. The
//! decoding is one pass, stops at the bytes left in the budget (0x90 runs
//! expand up to 255 times), and watches the deadline.

use super::archive::{Opened, Sink};
use super::budget::Budget;
use super::carrier::{hand_damaged, hand_decoded};

/// The line BinHex writers put first. macutils writes "(This file must be
/// converted; you knew that already.)", so only its start is looked for.
const MARKER: &[u8] = b"(This file must be converted";

const ALPHABET: &[u8; 64] = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";

/// Output bytes between two looks at the clock.
const CLOCK_STEP: usize = 1 << 20;

/// A BinHex marker line anywhere in `data`.
pub fn is_binhex(data: &[u8]) -> bool {
    memchr::memmem::find(data, MARKER).is_some()
}

/// Hands the data fork of every BinHex file in `data` to `sink`.
pub fn open(data: &[u8], budget: &mut Budget, sink: &mut Sink<'_>) -> Opened {
    let mut opened = Opened::default();
    let finder = memchr::memmem::Finder::new(MARKER);
    let mut from = 0;
    while let Some(at) = finder.find(&data[from..]) {
        let after = from + at + MARKER.len();
        // The encoded text starts at the first ':' after the marker line.
        let Some(colon) = memchr::memchr(b':', &data[after..]) else {
            break;
        };
        let start = after + colon + 1;
        let mut held = 0;
        let decoded = decode(&data[start..], budget, &mut held);
        budget.release(held);
        let go_on = match decoded {
            Ok((used, decoded)) => {
                from = start + used;
                let held = decoded.capacity() as u64;
                let go_on = budget.hold(held).is_ok() && hand(&decoded, &mut opened, budget, sink);
                budget.release(held);
                go_on
            }
            Err(reason) => {
                opened.problem(reason);
                false
            }
        };
        if !go_on {
            break;
        }
    }
    opened
}

/// Decodes the symbols up to the closing `:` (or the end), expanding the runs:
/// how many bytes of `text` it used, and the bytes. Err when the budget stops
/// it: the bytes left, the compression ratio (runs), memory, the deadline. The
/// memory the bytes take is held as they grow (`held`: the caller gives it back).
fn decode(text: &[u8], budget: &mut Budget, held: &mut u64) -> Result<(usize, Vec<u8>), String> {
    let mut table = [0xFFu8; 256];
    for (i, &c) in ALPHABET.iter().enumerate() {
        table[usize::from(c)] = i as u8;
    }
    let ratio_cap = budget.ratio_cap(text.len() as u64);
    let cap = usize::try_from(budget.bytes_left().min(ratio_cap)).unwrap_or(usize::MAX);
    let mut out: Vec<u8> = Vec::new();
    let mut rle = Rle::default();
    let mut acc = 0u32;
    let mut bits = 0u32;
    let mut next_clock = CLOCK_STEP;
    let mut used = text.len();
    for (i, &c) in text.iter().enumerate() {
        if c == b':' {
            used = i + 1;
            break;
        }
        let v = table[usize::from(c)];
        if v == 0xFF {
            continue; // line ends, blanks
        }
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            rle.push((acc >> bits) as u8, &mut out, cap);
            acc &= (1 << bits) - 1;
        }
        if out.len() > cap {
            return Err(if ratio_cap < budget.bytes_left() {
                budget.ratio_reason("BinHex data")
            } else {
                budget.unpacked_reason()
            });
        }
        if out.capacity() as u64 > *held {
            budget.hold(out.capacity() as u64 - *held)?;
            *held = out.capacity() as u64;
        }
        if out.len() >= next_clock {
            next_clock += CLOCK_STEP;
            budget.check_limits()?;
        }
    }
    Ok((used, out))
}

/// The run-length decoding: 0x90 then a count repeats the byte before it; 0x90
/// then 0 is a literal 0x90.
#[derive(Default)]
struct Rle {
    marker: bool,
    last: u8,
}

impl Rle {
    fn push(&mut self, b: u8, out: &mut Vec<u8>, cap: usize) {
        if self.marker {
            self.marker = false;
            if b == 0 {
                out.push(0x90);
                self.last = 0x90;
            } else {
                let n = usize::from(b - 1).min(cap.saturating_add(1).saturating_sub(out.len()));
                out.extend(std::iter::repeat_n(self.last, n));
            }
        } else if b == 0x90 {
            self.marker = true;
        } else {
            out.push(b);
            self.last = b;
        }
    }
}

/// Reads the header and hands the data fork to the sink. False when the
/// budget stops the carrier.
fn hand(decoded: &[u8], opened: &mut Opened, budget: &mut Budget, sink: &mut Sink<'_>) -> bool {
    let Some(&name_len) = decoded.first() else {
        return true;
    };
    let name_end = 1 + usize::from(name_len);
    // Name, version (1), type (4), creator (4), flags (2), data length (4),
    // resource length (4), header CRC (2).
    let header_end = name_end + 1 + 4 + 4 + 2 + 4 + 4 + 2;
    let name = decoded
        .get(1..name_end)
        .map(|n| n.iter().map(|&b| char::from(b)).collect::<String>())
        .unwrap_or_default();
    let Some(header) = decoded.get(..header_end) else {
        return cut_short(name, &[], opened, budget, sink);
    };
    let at = name_end + 1 + 4 + 4 + 2;
    let data_len =
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]) as usize;
    let rest = &decoded[header_end..];
    if data_len > rest.len() {
        return cut_short(name, rest, opened, budget, sink);
    }
    hand_decoded(name, &rest[..data_len], opened, budget, sink)
}

/// A file whose encoding ends before its data fork does: what there is, marked
/// damaged.
fn cut_short(
    name: String,
    data: &[u8],
    opened: &mut Opened,
    budget: &mut Budget,
    sink: &mut Sink<'_>,
) -> bool {
    let shown = if name.is_empty() { "(unnamed)" } else { &name };
    let reason = format!("damaged BinHex: file '{shown}' is cut short");
    hand_damaged(name, Some(data), reason, opened, budget, sink)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::LimitsSection;

    #[test]
    fn runs_expand_within_the_cap() {
        let mut out = Vec::new();
        let mut rle = Rle::default();
        for b in [b'a', 0x90, 4, 0x90, 0, b'b'] {
            rle.push(b, &mut out, 100);
        }
        assert_eq!(out, b"aaaa\x90b");
        let mut out = Vec::new();
        let mut rle = Rle::default();
        for b in [b'a', 0x90, 255, 0x90, 255] {
            rle.push(b, &mut out, 10);
        }
        assert_eq!(out.len(), 11);
    }

    #[test]
    fn decoding_stops_at_the_closing_colon() {
        let mut budget = Budget::new(&LimitsSection::default());
        // "!!" is six zero bits then six: one zero byte.
        let mut held = 0;
        let (used, out) = decode(b"!!\n!!: after", &mut budget, &mut held).unwrap();
        assert_eq!(used, 6);
        assert_eq!(out, [0, 0, 0]);
    }
}
