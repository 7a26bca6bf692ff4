//! Fuzz target: the frames replay reader, over the whole input as one file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickstream::replay::ReplayFormat;

fuzz_target!(|data: &[u8]| {
    let _ = tickstream_fuzz_support::read_replay(ReplayFormat::RawFrames, data);
});
