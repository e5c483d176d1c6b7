//! cargo-fuzz target `hostile_device`: see [`swiotlb_fuzz::hostile_device`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    swiotlb_fuzz::hostile_device(data);
});
