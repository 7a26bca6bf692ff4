//! Fuzz target: the Finnhub frame parser. The input is a sequence of frames, one per line, parsed
//! with one context (as one connection would), so sequence and gap tracking are exercised too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tickstream_fuzz_support::parse_frames(tickstream::feeds::finnhub::PROVIDER, data);
});
