//! Builds the connector components in `../plugins` for wasm32-wasip2 and
//! exposes them to the host: first-party connectors (`builtin = true` under
//! `[package.metadata.gatehouse]`) are embedded — the host still loads them
//! through the same path as any `.wasm` — and every other component's path
//! is given to tests as `GATEHOUSE_<CRATE_NAME>_WASM`.

use std::{
    env,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let plugins = root.join("plugins");
    println!("cargo:rerun-if-changed={}", plugins.display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    ensure_target();
    detect_test_tools(&root);

    let target_dir =
        env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target")).join("wasm");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    // From inside `plugins/`, so its `.cargo/config.toml` (guest linker
    // settings) applies.
    build
        .current_dir(&plugins)
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings are for the host, not for the guests.
    for var in
        ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR", "RUSTC_WORKSPACE_WRAPPER"]
    {
        build.env_remove(var);
    }
    let status = build.status().expect("cannot run cargo to build the plugins");
    assert!(status.success(), "building the plugins in {} failed (see the errors above)", plugins.display());

    let out = target_dir.join(TARGET).join("release");
    let mut builtin = String::from(
        "/// First-party connectors, built from `plugins/` by build.rs.\npub const BUILTIN: &[(&str, &[u8])] = &[\n",
    );
    for crate_dir in component_crates(&plugins) {
        let name = crate_dir.file_name().unwrap().to_string_lossy().to_string();
        let wasm = out.join(format!("{}.wasm", name.replace('-', "_")));
        assert!(wasm.exists(), "{} was not produced by the plugin build", wasm.display());
        let manifest = fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
        if !manifest.contains("[package.metadata.gatehouse]") || !manifest.contains("builtin = true") {
            let var = format!("GATEHOUSE_{}_WASM", name.to_uppercase().replace('-', "_"));
            println!("cargo:rustc-env={var}={}", wasm.display());
        } else {
            writeln!(
                builtin,
                "    ({:?}, include_bytes!({:?})),",
                format!("builtin:{name}"),
                wasm.display().to_string()
            )
            .unwrap();
        }
    }
    builtin.push_str("];\n");
    fs::write(PathBuf::from(env::var("OUT_DIR").unwrap()).join("builtin_plugins.rs"), builtin).unwrap();
}

/// Crates under `plugins/` that build a component (cdylib), sorted.
fn component_crates(plugins: &Path) -> Vec<PathBuf> {
    let mut crates: Vec<PathBuf> = fs::read_dir(plugins)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| fs::read_to_string(p.join("Cargo.toml")).is_ok_and(|t| t.contains("cdylib")))
        .collect();
    crates.sort();
    crates
}

/// The guests need the wasm32-wasip2 standard library: install it with
/// rustup when possible, else stop with one sentence saying how.
fn ensure_target() {
    let sysroot = Command::new(env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string()));
    let installed = |root: &Option<PathBuf>| root.as_ref().is_some_and(|r| r.join("lib/rustlib").join(TARGET).exists());
    if installed(&sysroot) {
        return;
    }
    let added = Command::new("rustup").args(["target", "add", TARGET]).status().is_ok_and(|s| s.success());
    if !added || !installed(&sysroot) {
        panic!(
            "The Rust target {TARGET} is missing and could not be installed: run `rustup target add {TARGET}` and build again."
        );
    }
}

/// The e2e tests that need tools outside rustup are compiled as ignored
/// (`cargo test` lists them as such, never as passed) when the tools are
/// missing: `gatehouse_browser` (node, `npm ci` in tests/browser, Chromium)
/// `gatehouse_componentize_py` and `gatehouse_componentize_js` (node, and
/// `npm ci` in plugins/bitbucket-js). Under `CI` they are never ignored, so
/// a missing tool fails the run. `tests/setup.sh` installs all of them.
fn detect_test_tools(root: &Path) {
    println!("cargo:rustc-check-cfg=cfg(gatehouse_browser)");
    println!("cargo:rustc-check-cfg=cfg(gatehouse_componentize_py)");
    println!("cargo:rustc-check-cfg=cfg(gatehouse_componentize_js)");
    for var in ["CI", "CHROMIUM", "PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let ci = env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
    let path_dirs: Vec<PathBuf> = env::var_os("PATH").map(|p| env::split_paths(&p).collect()).unwrap_or_default();
    // A found tool is watched itself; a missing one through the directories
    // it would appear in, so installing it triggers a new detection.
    let watch = |found: &Option<PathBuf>, dirs: &[PathBuf]| match found {
        Some(file) => println!("cargo:rerun-if-changed={}", file.display()),
        None => dirs.iter().filter(|d| d.is_dir()).for_each(|d| println!("cargo:rerun-if-changed={}", d.display())),
    };
    let on_path = |name: &str| path_dirs.iter().map(|d| d.join(name)).find(|p| p.is_file());

    let chromium = env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| Some(PathBuf::from("/usr/bin/chromium")).filter(|p| p.is_file()))
        .or_else(|| on_path("chromium"));
    watch(&chromium, &path_dirs);
    let node = on_path("node");
    watch(&node, &path_dirs);
    let browser_dir = root.join("tests/browser");
    let playwright = Some(browser_dir.join("node_modules/playwright-core/package.json")).filter(|p| p.is_file());
    watch(&playwright, std::slice::from_ref(&browser_dir));
    if let Some(chromium) = &chromium {
        println!("cargo:rustc-env=GATEHOUSE_TEST_CHROMIUM={}", chromium.display());
    } else {
        println!("cargo:rustc-env=GATEHOUSE_TEST_CHROMIUM=chromium");
    }
    if ci || (chromium.is_some() && node.is_some() && playwright.is_some()) {
        println!("cargo:rustc-cfg=gatehouse_browser");
    }

    let componentize = on_path("componentize-py");
    watch(&componentize, &path_dirs);
    if ci || componentize.is_some() {
        println!("cargo:rustc-cfg=gatehouse_componentize_py");
    }

    let js_dir = root.join("plugins/bitbucket-js");
    let componentize_js =
        Some(js_dir.join("node_modules/@bytecodealliance/componentize-js/package.json")).filter(|p| p.is_file());
    watch(&componentize_js, std::slice::from_ref(&js_dir));
    if ci || (node.is_some() && componentize_js.is_some()) {
        println!("cargo:rustc-cfg=gatehouse_componentize_js");
    }
}
