//! Builds every component crate of `../../plugins` that is not a
//! first-party connector (test components, examples) and writes their
//! paths as constants, `TEST_HOSTILE_WASM` for `test-hostile`. A dependency
//! of the tests only, so a host build does not rebuild them.

use std::{env, fmt::Write as _, path::PathBuf};

#[path = "../../host/guests.rs"]
mod guests;

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..").canonicalize().unwrap();
    let plugins = root.join("plugins");
    println!("cargo:rerun-if-changed=../../host/guests.rs");
    let test_guests: Vec<_> = guests::guests(&plugins).into_iter().filter(|g| !g.builtin).collect();
    guests::watch(&plugins, &test_guests);
    let names: Vec<&str> = test_guests.iter().map(|g| g.name.as_str()).collect();
    let mut consts = String::new();
    for (name, wasm) in names.iter().zip(guests::build(&plugins, &names)) {
        let constant = format!("{}_WASM", name.to_uppercase().replace('-', "_"));
        writeln!(consts, "/// The `{name}` component.\npub const {constant}: &str = {:?};", wasm.display().to_string())
            .unwrap();
    }
    guests::write_if_changed(&PathBuf::from(env::var("OUT_DIR").unwrap()).join("programs.rs"), &consts);
}
