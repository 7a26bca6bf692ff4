//! Partitioning: which partition a symbol belongs to, and the subjects its messages travel on.
//!
//! A symbol's partition is a stable hash of its text (64-bit FNV-1a) modulo the stream's
//! partition count — the same on every machine, build and run, so an ingest process and every
//! analytics node agree without talking. Messages of partition `p` travel on
//! `ticks.<p>.<symbol token>`; the token is the symbol with the characters a NATS subject token
//! cannot hold (`.`, `*`, `>`, whitespace) and `%`/`$` percent-encoded, so `BRK.B` travels as
//! `ticks.3.BRK%2EB`. A partition's clock messages use `ticks.<p>.$clock`, which no encoded
//! symbol can equal.

use std::fmt::Write;

/// The stream's subjects: `ticks.>`.
pub const SUBJECT_PREFIX: &str = "ticks";

/// The last token of a partition's clock messages.
pub const CLOCK_TOKEN: &str = "$clock";

/// The partition of `symbol` among `partitions` (at least 1).
pub fn partition_of(symbol: &str, partitions: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in symbol.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as u32
}

/// The subject token of `symbol` (see the module's documentation).
pub fn symbol_token(symbol: &str) -> String {
    let mut token = String::with_capacity(symbol.len());
    for c in symbol.chars() {
        match c {
            '.' | '*' | '>' | '%' | '$' => {
                let _ = write!(token, "%{:02X}", c as u32);
            }
            c if c.is_whitespace() || c.is_control() => {
                let mut bytes = [0u8; 4];
                for byte in c.encode_utf8(&mut bytes).bytes() {
                    let _ = write!(token, "%{byte:02X}");
                }
            }
            c => token.push(c),
        }
    }
    if token.is_empty() {
        token.push_str("%00");
    }
    token
}

/// The subject of `symbol`'s trades and quotes.
pub fn subject(partition: u32, symbol: &str) -> String {
    format!("{SUBJECT_PREFIX}.{partition}.{}", symbol_token(symbol))
}

/// The subject of partition `partition`'s clock messages.
pub fn clock_subject(partition: u32) -> String {
    format!("{SUBJECT_PREFIX}.{partition}.{CLOCK_TOKEN}")
}

/// Every subject of partition `partition` (a consumer's filter).
pub fn partition_filter(partition: u32) -> String {
    format!("{SUBJECT_PREFIX}.{partition}.>")
}

/// The partition a subject `ticks.<p>.…` belongs to.
pub fn partition_of_subject(subject: &str) -> Option<u32> {
    let rest = subject.strip_prefix(SUBJECT_PREFIX)?.strip_prefix('.')?;
    rest.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        // Fixed values: a change of hash would move every symbol of every running cluster.
        assert_eq!(partition_of("IBM", 16), partition_of("IBM", 16));
        assert_eq!(partition_of("", 16), (0xcbf2_9ce4_8422_2325u64 % 16) as u32);
        assert_eq!(
            partition_of("a", 1_000_000),
            (0xaf63_dc4c_8601_ec8cu64 % 1_000_000) as u32
        );
        assert_eq!(partition_of("IBM", 0), 0);
        let mut counts = [0usize; 8];
        for i in 0..8_000 {
            counts[partition_of(&format!("S{i}"), 8) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn subjects_hold_any_symbol() {
        assert_eq!(subject(3, "BTCUSDT"), "ticks.3.BTCUSDT");
        assert_eq!(subject(3, "BRK.B"), "ticks.3.BRK%2EB");
        assert_eq!(subject(0, "BTC/USD"), "ticks.0.BTC/USD");
        assert_eq!(symbol_token("a b*>%$"), "a%20b%2A%3E%25%24");
        assert_eq!(symbol_token(""), "%00");
        assert_eq!(clock_subject(7), "ticks.7.$clock");
        assert_eq!(partition_filter(7), "ticks.7.>");
        assert_eq!(partition_of_subject("ticks.12.IBM"), Some(12));
        assert_eq!(partition_of_subject("other.12.IBM"), None);
    }
}
