//! cargo-fuzz target `config`: see [`swiotlb_fuzz::config`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    swiotlb_fuzz::config(data);
});
