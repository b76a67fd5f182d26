//! Builds the first-party connectors in `../plugins` (`builtin = true`
//! under `[package.metadata.gatehouse]`) for wasm32-wasip2 and embeds them;
//! the host still loads them through the same path as any `.wasm`. Test
//! components are built once by `tests/programs`, not here.

use sha2::Digest as _;
use std::{
    env,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

#[path = "guests.rs"]
mod guests;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let plugins = root.join("plugins");
    println!("cargo:rerun-if-changed=guests.rs");
    detect_test_tools(&root);

    let builtin_guests: Vec<_> = guests::guests(&plugins).into_iter().filter(|g| g.builtin).collect();
    guests::watch(&plugins, &builtin_guests);
    let names: Vec<&str> = builtin_guests.iter().map(|g| g.name.as_str()).collect();
    let mut builtin = String::from(
        "/// First-party connectors, built from `plugins/` by build.rs.\npub const BUILTIN: &[Builtin] = &[\n",
    );
    for (name, wasm) in names.iter().zip(guests::build(&plugins, &names)) {
        // Hashed here, so a start does not hash what it carries.
        let bytes = std::fs::read(&wasm).unwrap_or_else(|e| panic!("{}: {e}", wasm.display()));
        let sha256: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        writeln!(
            builtin,
            "    Builtin {{ name: {:?}, wasm: include_bytes!({:?}), sha256: {:?} }},",
            format!("builtin:{name}"),
            wasm.display().to_string(),
            sha256
        )
        .unwrap();
    }
    builtin.push_str("];\n");
    guests::write_if_changed(&PathBuf::from(env::var("OUT_DIR").unwrap()).join("builtin_plugins.rs"), &builtin);
}

/// The e2e tests that need tools outside rustup are compiled as ignored
/// (`cargo test` lists them as such, never as passed) when the tools are
/// missing: `gatehouse_browser` (node, `npm ci` in tests/browser, Chromium),
/// `gatehouse_componentize_py`, `gatehouse_componentize_js` (node, and
/// `npm ci` in plugins/bitbucket-js), `gatehouse_netns` (unprivileged user,
/// network and mount namespaces with `unshare` and iproute2's `ip`, for the
/// tests that must not reach a real network if the code under test fails),
/// `gatehouse_strace` (an `strace` allowed to trace),
/// `gatehouse_api_tools` (schemathesis and openapi-python-client in
/// tests/api/.venv) and `gatehouse_postgres` (PostgreSQL's server
/// binaries, Debian's `postgresql` package). Under `CI` they are never ignored, so a missing tool
/// fails the run. `tests/setup.sh` installs all of them.
fn detect_test_tools(root: &Path) {
    println!("cargo:rustc-check-cfg=cfg(gatehouse_browser)");
    println!("cargo:rustc-check-cfg=cfg(gatehouse_componentize_py)");
    println!("cargo:rustc-check-cfg=cfg(gatehouse_componentize_js)");
    println!("cargo:rustc-check-cfg=cfg(gatehouse_netns)");
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

    // Tests whose target would be contacted if the code under test were
    // wrong run in a loopback-only network namespace with their own mount
    // namespace (`gatehouse_netns`); an unprivileged user gets both from
    // `unshare -rnm` where the kernel allows user namespaces.
    println!("cargo:rustc-check-cfg=cfg(gatehouse_netns)");
    for tool in ["unshare", "ip"] {
        watch(&on_path(tool), &path_dirs);
    }
    let netns = Command::new("unshare")
        .args(["-rnm", "sh", "-c", "ip link set lo up"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ci || netns {
        println!("cargo:rustc-cfg=gatehouse_netns");
    }

    let js_dir = root.join("plugins/bitbucket-js");
    let componentize_js =
        Some(js_dir.join("node_modules/@bytecodealliance/componentize-js/package.json")).filter(|p| p.is_file());
    watch(&componentize_js, std::slice::from_ref(&js_dir));
    if ci || (node.is_some() && componentize_js.is_some()) {
        println!("cargo:rustc-cfg=gatehouse_componentize_js");
    }

    // What reaches the disk is observed by tracing the host's fsync calls
    // (`gatehouse_strace`); containers may forbid ptrace.
    println!("cargo:rustc-check-cfg=cfg(gatehouse_strace)");
    watch(&on_path("strace"), &path_dirs);
    let strace = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "true"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ci || strace {
        println!("cargo:rustc-cfg=gatehouse_strace");
    }

    // PostgreSQL's server binaries, for the tests that run several hosts
    // on one database (`gatehouse_postgres`); Debian keeps them off PATH.
    println!("cargo:rustc-check-cfg=cfg(gatehouse_postgres)");
    let debian = Path::new("/usr/lib/postgresql");
    let initdb = std::fs::read_dir(debian)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/initdb"))
        .find(|p| p.is_file())
        .or_else(|| on_path("initdb"));
    watch(&initdb, &[path_dirs.clone(), vec![debian.to_path_buf()]].concat());
    if ci || initdb.is_some() {
        println!("cargo:rustc-cfg=gatehouse_postgres");
    }

    println!("cargo:rustc-check-cfg=cfg(gatehouse_api_tools)");
    let stamp = root.join("tests/api/.venv/requirements.txt");
    let api_tools = Some(stamp.clone()).filter(|p| p.is_file());
    watch(&api_tools, &[root.join("tests/api")]);
    if ci || api_tools.is_some() {
        println!("cargo:rustc-cfg=gatehouse_api_tools");
    }
}
