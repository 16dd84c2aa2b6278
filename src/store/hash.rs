//! Content hashes: how imipd recognises a version (of a file, of a queued text) it has
//! seen.

use sha2::{Digest, Sha256};

/// Hex SHA-256 of file content: how imipd recognises a version it has seen.
pub fn content_hash(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}
