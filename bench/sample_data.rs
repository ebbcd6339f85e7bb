//! Deterministic data for the benchmarks and the memory tests, shared by
//! bench/criterion/inspect.rs, bench/tools/memprobe.rs and tests/inspect_memory.rs
//! (each includes this file as a module).

#![allow(dead_code)] // each includer uses its own part of it

/// Pseudo-random bytes (xorshift64*), the same for the same seed.
pub fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Base64 in 76-character lines ending in CRLF, as mail clients write it.
pub fn base64_lines(data: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(data.len() / 57 * 78 + 80);
    for line in data.chunks(57) {
        for chunk in line.chunks(3) {
            let b = |i: usize| chunk.get(i).copied().unwrap_or(0) as u32;
            let n = b(0) << 16 | b(1) << 8 | b(2);
            for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
                out.push(if k <= chunk.len() {
                    ALPHABET[(n >> shift & 63) as usize]
                } else {
                    b'='
                });
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A zip holding one deflated entry of `unpacked` bytes (a multiple of 1 MiB) of
/// repetitive Vietnamese office text, about 70 times smaller packed: under every
/// inspection limit, yet far larger unpacked than the message. Made in a moment:
/// one 1 MiB chunk is deflated once, ending in a full flush (so that it refers to
/// nothing before it), and its deflated bytes are repeated.
pub fn big_entry_zip(name: &str, unpacked: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, Crc, FlushCompress};
    const CHUNK: usize = 1 << 20;
    assert_eq!(unpacked % CHUNK, 0, "a multiple of 1 MiB");
    let mut text = Vec::with_capacity(CHUNK + 512);
    let mut line = 0;
    while text.len() < CHUNK {
        text.extend_from_slice(
            format!("{line:06} Ban scan ho so luu tru, trang {}.", line % 7).as_bytes(),
        );
        text.extend_from_slice(&b" Noi dung da duoc kiem tra va dong dau.".repeat(7));
        text.push(b'\n');
        line += 1;
    }
    text.truncate(CHUNK);
    let mut deflater = Compress::new(Compression::default(), false);
    // Room for any output: one call deflates and flushes it all.
    let mut block = Vec::with_capacity(2 * CHUNK);
    deflater
        .compress_vec(&text, &mut block, FlushCompress::Full)
        .expect("deflate");
    assert!(deflater.total_in() == CHUNK as u64 && block.len() < block.capacity());
    let copies = unpacked / CHUNK;
    let mut deflated = Vec::with_capacity(block.len() * copies + 2);
    for _ in 0..copies {
        deflated.extend_from_slice(&block);
    }
    // The final block: empty, fixed Huffman codes.
    deflated.extend_from_slice(&[0x03, 0x00]);
    let mut one = Crc::new();
    one.update(&text);
    let mut crc = Crc::new();
    for _ in 0..copies {
        crc.combine(&one);
    }
    one_entry_zip(name, 8, crc.sum(), &deflated, unpacked as u32)
}

/// A zip of one entry whose data (compressed with `method`) is given as is.
fn one_entry_zip(name: &str, method: u16, crc: u32, data: &[u8], unpacked: u32) -> Vec<u8> {
    let name = name.as_bytes();
    let mut zip = Vec::with_capacity(data.len() + 200);
    let (time, date) = (0u16, (2025 - 1980) << 9 | 3 << 5 | 3);
    zip.extend_from_slice(&0x0403_4B50u32.to_le_bytes());
    for v in [20u16, 0, method, time, date] {
        zip.extend_from_slice(&v.to_le_bytes());
    }
    for v in [crc, data.len() as u32, unpacked] {
        zip.extend_from_slice(&v.to_le_bytes());
    }
    zip.extend_from_slice(&(name.len() as u16).to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip.extend_from_slice(name);
    zip.extend_from_slice(data);
    let directory = zip.len() as u32;
    zip.extend_from_slice(&0x0201_4B50u32.to_le_bytes());
    for v in [20u16, 20, 0, method, time, date] {
        zip.extend_from_slice(&v.to_le_bytes());
    }
    for v in [crc, data.len() as u32, unpacked] {
        zip.extend_from_slice(&v.to_le_bytes());
    }
    for v in [name.len() as u16, 0, 0, 0, 0] {
        zip.extend_from_slice(&v.to_le_bytes());
    }
    zip.extend_from_slice(&0u32.to_le_bytes()); // external attributes
    zip.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    zip.extend_from_slice(name);
    let directory_len = zip.len() as u32 - directory;
    zip.extend_from_slice(&0x0605_4B50u32.to_le_bytes());
    for v in [0u16, 0, 1, 1] {
        zip.extend_from_slice(&v.to_le_bytes());
    }
    zip.extend_from_slice(&directory_len.to_le_bytes());
    zip.extend_from_slice(&directory.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip
}

/// A message with a short text and one base64 attachment.
pub fn message_with_attachment(name: &str, content_type: &str, data: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "From: Nguoi gui <sender@example.org>\r\nTo: nguoidung@bacgiang.gov.vn\r\nSubject: Ho so luu tru\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\n--=_b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGui kem ho so.\r\n--=_b\r\nContent-Type: {content_type}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice(&base64_lines(data));
    m.extend_from_slice(b"--=_b--\r\n");
    m
}
