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
