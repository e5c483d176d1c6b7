//! cargo-fuzz target `ops`: see [`swiotlb_fuzz::ops`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    swiotlb_fuzz::ops(data);
});
