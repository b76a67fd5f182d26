//! Builds every component crate of `../../plugins` that is not a
//! first-party connector (test components, examples) and writes their
//! paths as constants, `TEST_HOSTILE_WASM` for `test-hostile`. A dependency
//! of the tests only, so a host build does not rebuild them.

use std::{env, fmt::Write as _, fs, path::PathBuf};

#[path = "../../host/guests.rs"]
mod guests;

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..").canonicalize().unwrap();
    let plugins = root.join("plugins");
    println!("cargo:rerun-if-changed=../../host/guests.rs");
    let names: Vec<String> = guests::guests(&plugins).into_iter().filter(|g| !g.builtin).map(|g| g.name).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut consts = String::new();
    for (name, wasm) in names.iter().zip(guests::build(&plugins, &names)) {
        let constant = format!("{}_WASM", name.to_uppercase().replace('-', "_"));
        writeln!(consts, "/// The `{name}` component.\npub const {constant}: &str = {:?};", wasm.display().to_string())
            .unwrap();
    }
    fs::write(PathBuf::from(env::var("OUT_DIR").unwrap()).join("programs.rs"), consts).unwrap();
}
