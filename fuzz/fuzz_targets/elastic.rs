//! cargo-fuzz target `elastic`: see [`swiotlb_fuzz::elastic`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    swiotlb_fuzz::elastic(data);
});
