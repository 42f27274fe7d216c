//! `cfg(gpu)`: this build has a GPU backend — wgpu natively (feature `wgpu`), WebGPU in the
//! browser's single-threaded build (not the threaded one, built with `+atomics`: Cargo.toml).

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(gpu)");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32");
    let threads = std::env::var("CARGO_CFG_TARGET_FEATURE")
        .is_ok_and(|features| features.split(',').any(|f| f == "atomics"));
    let wgpu = std::env::var_os("CARGO_FEATURE_WGPU").is_some();
    if wgpu || (wasm && !threads) {
        println!("cargo::rustc-cfg=gpu");
    }
}
