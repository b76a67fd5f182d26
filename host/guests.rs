//! Build-script helper shared by `host/build.rs` (first-party connectors,
//! embedded) and `tests/programs/build.rs` (test components): builds chosen
//! crates of the `plugins/` workspace for wasm32-wasip2 and says where each
//! component is. Which crates are first-party is read from Cargo metadata
//! (`[package.metadata.gatehouse] builtin = true`), not from manifest text.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

pub const TARGET: &str = "wasm32-wasip2";

/// A component crate of the plugins workspace.
pub struct Guest {
    pub name: String,
    pub builtin: bool,
    /// Its directory and those of the workspace crates it depends on,
    /// directly or not: what its component is built from.
    pub sources: Vec<PathBuf>,
}

/// The crates that build a component (a cdylib), sorted by name.
pub fn guests(plugins: &Path) -> Vec<Guest> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--manifest-path"])
        .arg(plugins.join("Cargo.toml"))
        .output()
        .expect("cannot run cargo metadata on the plugins workspace");
    assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let dir_of =
        |p: &serde_json::Value| PathBuf::from(p["manifest_path"].as_str().unwrap_or_default()).with_file_name("");
    let by_name = |name: &str| packages.iter().find(|p| p["name"] == name);
    let mut guests: Vec<Guest> = packages
        .iter()
        .filter(|p| {
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t["crate_types"].as_array().into_iter().flatten().any(|c| c == "cdylib"))
        })
        .map(|p| {
            let mut sources = vec![dir_of(p)];
            let mut pending = vec![p.clone()];
            while let Some(package) = pending.pop() {
                for dep in package["dependencies"].as_array().into_iter().flatten() {
                    if dep["path"].is_string()
                        && let Some(local) = dep["name"].as_str().and_then(by_name)
                        && !sources.contains(&dir_of(local))
                    {
                        sources.push(dir_of(local));
                        pending.push(local.clone());
                    }
                }
            }
            Guest {
                name: p["name"].as_str().unwrap_or_default().to_string(),
                builtin: p["metadata"]["gatehouse"]["builtin"].as_bool() == Some(true),
                sources,
            }
        })
        .collect();
    guests.sort_by(|a, b| a.name.cmp(&b.name));
    guests
}

/// Tells cargo to run the build script again only when what `guests` are
/// built from changes: their crates, the workspace's manifest, lock file
/// and guest settings, and the WIT.
pub fn watch(plugins: &Path, guests: &[Guest]) {
    let root = plugins.parent().unwrap();
    let mut watched = vec![
        plugins.join("Cargo.toml"),
        plugins.join("Cargo.lock"),
        plugins.join(".cargo/config.toml"),
        root.join("wit"),
    ];
    watched.extend(guests.iter().flat_map(|g| g.sources.iter().cloned()));
    watched.sort();
    watched.dedup();
    for path in watched {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// Writes `contents` unless the file already holds them, so an unchanged
/// result does not make cargo rebuild what includes it.
pub fn write_if_changed(path: &Path, contents: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(contents) {
        std::fs::write(path, contents).unwrap();
    }
}

/// Builds `names` in release mode and returns each component's path. The
/// target must be installed already (`rustup target add wasm32-wasip2`,
/// which `tests/setup.sh` and CI run): a build never installs toolchains.
pub fn build(plugins: &Path, names: &[&str]) -> Vec<PathBuf> {
    check_target();
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| plugins.parent().unwrap().join("target"))
        .join("wasm");
    let mut build = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // From inside `plugins/`, so its `.cargo/config.toml` (guest linker
    // settings) applies.
    build
        .current_dir(plugins)
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for name in names {
        build.args(["-p", name]);
    }
    // The outer build's settings are for the host, not for the guests.
    for var in
        ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR", "RUSTC_WORKSPACE_WRAPPER"]
    {
        build.env_remove(var);
    }
    let status = build.status().expect("cannot run cargo to build the plugins");
    assert!(status.success(), "building {names:?} in {} failed (see the errors above)", plugins.display());
    let out = target_dir.join(TARGET).join("release");
    names
        .iter()
        .map(|name| {
            let wasm = out.join(format!("{}.wasm", name.replace('-', "_")));
            assert!(wasm.exists(), "{} was not produced by the plugin build", wasm.display());
            wasm
        })
        .collect()
}

fn check_target() {
    let sysroot = Command::new(env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string()));
    let installed = sysroot.is_some_and(|r| r.join("lib/rustlib").join(TARGET).exists());
    assert!(installed, "The Rust target {TARGET} is missing: run `rustup target add {TARGET}` and build again.");
}
