//! Release builds of the function on Linux link with `hot-text.ld`, which gathers the code a cold
//! start runs before the rest of the text (how and why: `xtask/src/hot_text.rs`). GNU ld, lld and
//! zig (cargo-lambda's linker) all take the script. `SECRETS_HOT_TEXT=off` leaves it out (the
//! profiling build that regenerates it).

fn main() {
    println!("cargo::rerun-if-changed=hot-text.ld");
    println!("cargo::rerun-if-env-changed=SECRETS_HOT_TEXT");
    let release = std::env::var("PROFILE").is_ok_and(|profile| profile == "release");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let off = std::env::var("SECRETS_HOT_TEXT").is_ok_and(|value| value == "off");
    if release && linux && !off {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/hot-text.ld");
        println!("cargo::rustc-link-arg-bins=-Wl,-T,{script}");
    }
}
