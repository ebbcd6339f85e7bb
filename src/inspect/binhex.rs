//! BinHex 4.0 (`.hqx`): a Macintosh file (name, data fork, resource fork) as
//! text, still decoded by StuffIt Expander and some mail clients. The data
//! fork, under the file's name, goes to the sink like an archive entry; the
//! resource fork is Mac-only and is not inspected.
//!
//! Format (RFC 1741): after the `(This file must be converted with BinHex`
//! line, text between two `:` in a 64-symbol alphabet (line ends skipped), run
//! length encoded with 0x90, holding a header (name, type, creator, flags, fork
//! lengths, CRC), the data fork and the resource fork, each with a CRC. The
//! data fork is decoded as a stream ([`Decoder`] is a `Read`), so it is read
//! like an archive entry: within the bytes left and the ratio limit (0x90 runs
//! expand up to 255 times), held whole only when it must be opened, the
//! deadline watched.

use std::io::{self, Read};

use super::archive::{Opened, Sink};
use super::budget::Budget;
use super::carrier::{hand_damaged, hand_unpacked};

/// The line BinHex writers put first. macutils writes "(This file must be
/// converted; you knew that already.)", so only its start is looked for.
const MARKER: &[u8] = b"(This file must be converted";

const ALPHABET: &[u8; 64] = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";

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
        // The encoded text runs from the first ':' after the marker line to
        // the next (the alphabet has no ':').
        let Some(colon) = memchr::memchr(b':', &data[after..]) else {
            break;
        };
        let start = after + colon + 1;
        let end = memchr::memchr(b':', &data[start..]).map_or(data.len(), |e| start + e);
        from = end;
        if let Err(reason) = budget.check_limits() {
            opened.problem(reason);
            break;
        }
        if !hand(&data[start..end], &mut opened, budget, sink) {
            break;
        }
    }
    opened
}

/// Reads the header of one encoded file and hands its data fork to the sink.
/// False when the budget stops the carrier.
fn hand(text: &[u8], opened: &mut Opened, budget: &mut Budget, sink: &mut Sink<'_>) -> bool {
    let mut decoder = Decoder::new(text);
    let Some(header) = Header::read(&mut decoder) else {
        let name = decoder.name_seen.clone();
        let shown = if name.is_empty() { "(unnamed)" } else { &name };
        let reason = format!("damaged BinHex: file '{shown}' is cut short");
        return hand_damaged(name, Some(&[]), reason, opened, budget, sink);
    };
    let open_fork = || -> Box<dyn Read + '_> {
        let mut d = Decoder::new(text);
        let _ = Header::read(&mut d);
        Box::new(DataFork {
            decoder: d,
            left: header.data_len,
        })
    };
    hand_unpacked(
        header.name.clone(),
        text.len() as u64,
        open_fork,
        "BinHex",
        opened,
        budget,
        sink,
    )
}

/// The header of a BinHex file (what the data fork needs).
struct Header {
    name: String,
    data_len: u64,
}

impl Header {
    /// Name, version (1), type (4), creator (4), flags (2), data length (4),
    /// resource length (4), header CRC (2); `None` when the text ends first.
    fn read(d: &mut Decoder<'_>) -> Option<Header> {
        let name_len = d.next_byte()?;
        let mut name = String::new();
        for _ in 0..name_len {
            name.push(char::from(d.next_byte()?));
            d.name_seen.clone_from(&name);
        }
        for _ in 0..1 + 4 + 4 + 2 {
            d.next_byte()?;
        }
        let mut len = [0u8; 4];
        for b in &mut len {
            *b = d.next_byte()?;
        }
        for _ in 0..4 + 2 {
            d.next_byte()?;
        }
        Some(Header {
            name,
            data_len: u64::from(u32::from_be_bytes(len)),
        })
    }
}

/// The data fork: the decoder's next `left` bytes; text that ends before them
/// is an error (the file is cut short).
struct DataFork<'a> {
    decoder: Decoder<'a>,
    left: u64,
}

impl Read for DataFork<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() && self.left > 0 {
            match self.decoder.next_byte() {
                Some(b) => {
                    buf[n] = b;
                    n += 1;
                    self.left -= 1;
                }
                None if n > 0 => break,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the data fork is cut short",
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// The bytes of the encoded text: symbols to bytes, then the run-length
/// decoding (0x90 then a count repeats the byte before it; 0x90 then 0 is a
/// literal 0x90).
struct Decoder<'a> {
    text: &'a [u8],
    pos: usize,
    acc: u32,
    bits: u32,
    last: u8,
    /// Repeats of `last` still to give.
    run: u8,
    /// The name as far as the header was read (for the reason when it ends).
    name_seen: String,
}

impl<'a> Decoder<'a> {
    fn new(text: &'a [u8]) -> Self {
        Decoder {
            text,
            pos: 0,
            acc: 0,
            bits: 0,
            last: 0,
            run: 0,
            name_seen: String::new(),
        }
    }

    /// The next byte before the run-length decoding.
    fn next_raw(&mut self) -> Option<u8> {
        while self.bits < 8 {
            let c = *self.text.get(self.pos)?;
            self.pos += 1;
            if let Some(v) = symbol(c) {
                self.acc = (self.acc << 6 | u32::from(v)) & 0xFFFF;
                self.bits += 6;
            }
        }
        self.bits -= 8;
        Some((self.acc >> self.bits) as u8)
    }

    fn next_byte(&mut self) -> Option<u8> {
        loop {
            if self.run > 0 {
                self.run -= 1;
                return Some(self.last);
            }
            let b = self.next_raw()?;
            if b != 0x90 {
                self.last = b;
                return Some(b);
            }
            match self.next_raw()? {
                0 => {
                    self.last = 0x90;
                    return Some(0x90);
                }
                // The byte before is already out: `count - 1` more.
                count => self.run = count - 1,
            }
        }
    }
}

/// Encodes bytes (already run-length encoded, or free of 0x90) as BinHex
/// symbols, without line breaks (for tests and fixtures).
pub fn encode_symbols(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len().div_ceil(3) * 4);
    for chunk in raw.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = b(0) << 16 | b(1) << 8 | b(2);
        for shift in [18, 12, 6, 0] {
            out.push(ALPHABET[(n >> shift & 63) as usize]);
        }
    }
    out
}

/// Symbol values by byte; 0xFF for bytes that are not symbols.
const SYMBOLS: [u8; 256] = {
    let mut table = [0xFF; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// The value of a BinHex symbol; `None` for line ends and blanks.
fn symbol(c: u8) -> Option<u8> {
    let v = SYMBOLS[usize::from(c)];
    (v != 0xFF).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_expand() {
        let text = encode_symbols(&[b'a', 0x90, 4, 0x90, 0, b'b']);
        let mut d = Decoder::new(&text);
        let out: Vec<u8> = std::iter::from_fn(|| d.next_byte()).collect();
        assert_eq!(&out[..6], b"aaaa\x90b");
    }

    #[test]
    fn a_fork_cut_short_is_an_error() {
        let mut fork = DataFork {
            decoder: Decoder::new(b"!!\n!!"),
            left: 10,
        };
        let mut buf = [0u8; 16];
        assert_eq!(fork.read(&mut buf).unwrap(), 3);
        assert!(fork.read(&mut buf).is_err());
    }
}
