//! Files that carry files without being archives: PDF embedded files
//! (src/inspect/pdf.rs), RTF embedded objects (src/inspect/rtf.rs), HTML `data:`
//! URIs and script-built blobs (src/inspect/html.rs) and BinHex 4.0
//! (src/inspect/binhex.rs). The readers and the people who open these files
//! extract what they carry, so the filter does too: each carried file goes to
//! the same sink as an archive entry (src/inspect/file.rs), where it is typed,
//! checked by name and content, opened in turn, and charged to the [`Budget`].
//!
//! ClamAV unpacks some of these too, but a new executable has no signature:
//! policy must see it without clamd.

use std::io::Read;

use super::archive::{Entry, Keep, Opened, Sink, deliver, deliver_slice, read_entry};
use super::budget::Budget;
use super::transfer::hex;
use super::{binhex, html, pdf, rtf};

/// The kinds of carrier the filter opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    Pdf,
    Rtf,
    Html,
    BinHex,
}

impl Carrier {
    /// For reasons: "damaged PDF: ...".
    pub fn name(self) -> &'static str {
        match self {
            Carrier::Pdf => "PDF",
            Carrier::Rtf => "RTF",
            Carrier::Html => "HTML",
            Carrier::BinHex => "BinHex",
        }
    }
}

/// The carrier `data` is, by content (and, for HTML, which has no magic, by
/// its name too).
pub fn carrier_kind(name: Option<&str>, data: &[u8]) -> Option<Carrier> {
    if pdf::is_pdf(data) {
        Some(Carrier::Pdf)
    } else if rtf::is_rtf(data) {
        Some(Carrier::Rtf)
    } else if binhex::is_binhex(data) {
        Some(Carrier::BinHex)
    } else if html::is_html(name, data) {
        Some(Carrier::Html)
    } else {
        None
    }
}

/// Hands every file `data` carries to `sink`, within the budget.
pub fn open(carrier: Carrier, data: &[u8], budget: &mut Budget, sink: &mut Sink<'_>) -> Opened {
    match carrier {
        Carrier::Pdf => pdf::open(data, budget, sink),
        Carrier::Rtf => rtf::open(data, budget, sink),
        Carrier::Html => html::open(data, budget, sink),
        Carrier::BinHex => binhex::open(data, budget, sink),
    }
}

/// Hands one carried file, already decoded into `bytes` (whose memory the
/// caller holds), to the sink: an entry taken from the budget, its bytes
/// counted as unpacked. False when the budget stops the carrier (the reason is
/// in `opened`).
pub fn hand_decoded(
    name: String,
    bytes: &[u8],
    opened: &mut Opened,
    budget: &mut Budget,
    sink: &mut Sink<'_>,
) -> bool {
    if !take_entry(opened, budget) {
        return false;
    }
    if bytes.len() as u64 > budget.bytes_left() {
        opened.problem(budget.unpacked_reason());
        return false;
    }
    deliver_slice(name, bytes, budget, sink);
    !budget.exhausted()
}

/// [`hand_decoded`] for bytes the carrier's reader decoded into a buffer of its
/// own: their memory is held from the budget while the sink inspects them.
pub fn hand_owned(
    name: String,
    bytes: Vec<u8>,
    opened: &mut Opened,
    budget: &mut Budget,
    sink: &mut Sink<'_>,
) -> bool {
    let held = bytes.capacity() as u64;
    if let Err(reason) = budget.hold(held) {
        opened.problem(reason);
        return false;
    }
    let go_on = hand_decoded(name, &bytes, opened, budget, sink);
    budget.release(held);
    go_on
}

/// Unpacks one carried file from the reader `open` makes (a decompressor over
/// `packed` bytes) and hands it to the sink like an archive entry: bounded by
/// the bytes left, the compression ratio and the deadline; read again whole
/// when its end shows a zip behind other data. False when the budget stops the
/// carrier.
pub fn hand_unpacked<'r>(
    name: String,
    packed: u64,
    mut open: impl FnMut() -> Box<dyn Read + 'r>,
    what: &str,
    opened: &mut Opened,
    budget: &mut Budget,
    sink: &mut Sink<'_>,
) -> bool {
    if !take_entry(opened, budget) {
        return false;
    }
    let mut keep = Keep::AsNeeded;
    let unpacked = loop {
        let unpacked = read_entry(&mut open(), packed, &name, keep, budget);
        if !unpacked.wants_whole {
            break unpacked;
        }
        budget.refund_bytes(unpacked.total);
        unpacked.discard(budget);
        keep = Keep::Whole;
    };
    deliver(name, 0, unpacked, what, opened, budget, sink);
    !budget.exhausted()
}

/// Hands a carried file the carrier could not give whole (cut short, encoded
/// in a way not decoded here) to the sink: what there is of it, and `reason`,
/// which also makes the carrier uninspectable. False when the budget stops the
/// carrier.
pub fn hand_damaged(
    name: String,
    data: Option<&[u8]>,
    reason: String,
    opened: &mut Opened,
    budget: &mut Budget,
    sink: &mut Sink<'_>,
) -> bool {
    if !take_entry(opened, budget) {
        return false;
    }
    opened.problem(reason.clone());
    sink(
        budget,
        Entry {
            name,
            size: data.map_or(0, |d| d.len() as u64),
            encrypted: false,
            data,
            tail: None,
            sha256: None,
            note: Some(reason),
        },
    );
    true
}

/// Takes one entry from the budget; false (the reason in `opened`) when none is
/// left.
fn take_entry(opened: &mut Opened, budget: &mut Budget) -> bool {
    match budget.take_entry() {
        Ok(()) => true,
        Err(reason) => {
            opened.problem(reason);
            false
        }
    }
}

/// Hexadecimal digits to bytes, one digit at a time; anything else is skipped.
#[derive(Default)]
pub struct HexDecoder {
    high: Option<u8>,
}

impl HexDecoder {
    pub fn push(&mut self, c: u8, out: &mut Vec<u8>) {
        let Some(v) = hex(c) else { return };
        match self.high.take() {
            Some(h) => out.push(h << 4 | v),
            None => self.high = Some(v),
        }
    }
}

/// Decodes hexadecimal digits, skipping whitespace and anything else that is
/// not a digit (PDF's ASCIIHexDecode, hex strings). An odd last digit counts as
/// followed by 0, as PDF says.
pub fn decode_hex(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut decoder = HexDecoder::default();
    for &c in text {
        decoder.push(c, &mut out);
    }
    if let Some(h) = decoder.high {
        out.push(h << 4);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_skips_blanks_and_pads_an_odd_digit() {
        assert_eq!(decode_hex(b"4d 5a\r\n9"), b"MZ\x90");
        assert_eq!(decode_hex(b""), b"");
    }
}
