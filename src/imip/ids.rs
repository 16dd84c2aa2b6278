//! Message-IDs and MIME boundaries that are unique in production and fixed in tests.
//!
//! Both are derived from a caller-supplied 64-bit `unique` value (random or a counter
//! in the daemon, a constant in tests) together with the UID, the recipient and the
//! time, through a small fixed hash (FNV-1a), so the same inputs always give the same
//! bytes on every platform and toolchain. Nothing here is secret or cryptographic.

/// 128 bits of FNV-1a over `parts`, as 32 hex digits.
pub(crate) fn digest(parts: &[&[u8]]) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    for part in parts {
        for &byte in part.iter().chain(&[0xff]) {
            a = (a ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
            b = (b ^ u64::from(byte))
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(5);
        }
    }
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_stable_and_sensitive() {
        let one = digest(&[b"uid", b"bob@example.net", &7u64.to_be_bytes()]);
        assert_eq!(
            one,
            digest(&[b"uid", b"bob@example.net", &7u64.to_be_bytes()])
        );
        assert_ne!(
            one,
            digest(&[b"uid", b"bob@example.net", &8u64.to_be_bytes()])
        );
        // Part boundaries matter: ("ab", "c") differs from ("a", "bc").
        assert_ne!(digest(&[b"ab", b"c"]), digest(&[b"a", b"bc"]));
        assert_eq!(one.len(), 32);
    }
}
