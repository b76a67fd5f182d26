//! `gatehouse plugins new`: writes a new connector project (Rust, Python or
//! JavaScript) with its native tests and build settings, from templates and
//! an SDK copy compiled into this binary, so it builds outside this
//! repository without anything else from it.

use std::path::{Path, PathBuf};

/// The languages a connector can be scaffolded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "{0:?} is not a usable connector id: use 1-64 lowercase letters, digits and dashes, starting with a letter"
    )]
    BadName(String),
    #[error("{0} already exists and is not empty; choose another name or --dir")]
    NotEmpty(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The componentize-js version the JavaScript template pins (the one the
/// repository's JavaScript connector is built and tested with).
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// The WIT the Python and JavaScript templates build against.
const WIT: &[(&str, &str)] = &[
    ("wit/provider.wit", include_str!("../../wit/provider.wit")),
    ("wit/deps/host.wit", include_str!("../../wit/deps/host.wit")),
];

/// The Rust SDK, vendored into a Rust connector unless `--sdk-path` names one.
const SDK: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../plugins/sdk/Cargo.toml")),
    ("build.rs", include_str!("../../plugins/sdk/build.rs")),
    ("src/lib.rs", include_str!("../../plugins/sdk/src/lib.rs")),
    ("src/action.rs", include_str!("../../plugins/sdk/src/action.rs")),
    ("src/http.rs", include_str!("../../plugins/sdk/src/http.rs")),
    ("src/log.rs", include_str!("../../plugins/sdk/src/log.rs")),
    ("src/oauth.rs", include_str!("../../plugins/sdk/src/oauth.rs")),
    ("src/sync.rs", include_str!("../../plugins/sdk/src/sync.rs")),
    ("src/testkit.rs", include_str!("../../plugins/sdk/src/testkit.rs")),
    ("wit/provider.wit", include_str!("../../plugins/sdk/wit/provider.wit")),
    ("wit/deps/host.wit", include_str!("../../plugins/sdk/wit/deps/host.wit")),
];

const RUST: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../templates/rust/Cargo.toml")),
    (".cargo/config.toml", include_str!("../templates/rust/cargo/config.toml")),
    ("src/lib.rs", include_str!("../templates/rust/src/lib.rs")),
    ("tests/verify.rs", include_str!("../templates/rust/tests/verify.rs")),
    ("README.md", include_str!("../templates/rust/README.md")),
    (".gitignore", include_str!("../templates/rust/gitignore")),
];

const PYTHON: &[(&str, &str)] = &[
    ("app.py", include_str!("../templates/python/app.py")),
    ("test_app.py", include_str!("../templates/python/test_app.py")),
    ("README.md", include_str!("../templates/python/README.md")),
    (".gitignore", include_str!("../templates/python/gitignore")),
];

const JS: &[(&str, &str)] = &[
    ("connector.js", include_str!("../templates/js/connector.js")),
    ("package.json", include_str!("../templates/js/package.json")),
    ("test/connector.test.js", include_str!("../templates/js/test/connector.test.js")),
    ("test/host.js", include_str!("../templates/js/test/host.js")),
    ("test/register.js", include_str!("../templates/js/test/register.js")),
    ("README.md", include_str!("../templates/js/README.md")),
    (".gitignore", include_str!("../templates/js/gitignore")),
];

/// Where the vendored SDK goes in a Rust connector.
const VENDORED_SDK: &str = "vendor/gatehouse-plugin";

/// What to create.
pub struct Request<'a> {
    pub name: &'a str,
    pub lang: Lang,
    pub dir: &'a Path,
    /// A path dependency on this SDK instead of a vendored copy (Rust).
    pub sdk_path: Option<&'a Path>,
}

/// Writes the project; answers the files written, relative to `dir`.
pub fn create(request: &Request<'_>) -> Result<Vec<String>, ScaffoldError> {
    let name = request.name;
    let valid = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        return Err(ScaffoldError::BadName(name.to_string()));
    }
    let dir = request.dir;
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ScaffoldError::NotEmpty(dir.to_path_buf()));
    }
    let sdk_path = match request.sdk_path {
        Some(path) => path.display().to_string(),
        None => VENDORED_SDK.to_string(),
    };
    let sdk_note = match request.sdk_path {
        Some(_) => "a path dependency, from --sdk-path",
        None => "a copy of the SDK this gatehouse binary was built with; point the dependency elsewhere to upgrade",
    };
    let vars: &[(&str, &str)] = &[
        ("{{id}}", name),
        ("{{crate_name}}", &name.replace('-', "_")),
        ("{{title}}", &title(name)),
        ("{{sdk_path}}", &sdk_path),
        ("{{sdk_note}}", sdk_note),
        ("{{wit_version}}", crate::runtime::wit::latest::VERSION),
        ("{{componentize_js_version}}", COMPONENTIZE_JS_VERSION),
    ];
    let mut files: Vec<(String, String)> = Vec::new();
    let templates = match request.lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Js => JS,
    };
    for (path, text) in templates {
        files.push((path.to_string(), fill(text, vars)));
    }
    match (request.lang, request.sdk_path) {
        (Lang::Rust, None) => {
            files.extend(SDK.iter().map(|(path, text)| (format!("{VENDORED_SDK}/{path}"), text.to_string())))
        }
        (Lang::Rust, Some(_)) => {}
        (Lang::Python | Lang::Js, _) => files.extend(WIT.iter().map(|(p, t)| (p.to_string(), t.to_string()))),
    }
    for (path, text) in &files {
        let target = dir.join(path);
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(target.parent().unwrap_or(dir))?;
            std::fs::write(&target, text)
        };
        write().map_err(|source| ScaffoldError::Write { path: target.clone(), source })?;
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

/// What to run next, for the person who asked.
pub fn next_steps(lang: Lang, dir: &Path) -> String {
    let dir = dir.display();
    match lang {
        Lang::Rust => {
            format!("cd {dir} && cargo test && cargo build --release --target wasm32-wasip2   (see README.md there)")
        }
        Lang::Python => format!(
            "cd {dir} && python3 test_app.py && componentize-py -d wit -w provider componentize app -o connector.wasm   (needs componentize-py==0.25.1; see README.md there)"
        ),
        Lang::Js => format!("cd {dir} && npm install && npm test && npm run build   (see README.md there)"),
    }
}

fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    vars.iter().fold(template.to_string(), |text, (key, value)| text.replace(key, value))
}

/// `acme-widgets` → `Acme Widgets`.
fn title(name: &str) -> String {
    name.split('-')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_carries_the_repositorys_wit() {
        // The SDK builds from its own copy; it must be the contract the host
        // implements, or a connector would build against another one.
        assert_eq!(SDK[9].1, WIT[0].1, "plugins/sdk/wit/provider.wit differs from wit/provider.wit");
        assert_eq!(SDK[10].1, WIT[1].1, "plugins/sdk/wit/deps/host.wit differs from wit/deps/host.wit");
        let version = crate::runtime::wit::latest::VERSION;
        assert!(SDK[0].1.contains(&format!("\nversion = \"{version}\"")), "the SDK's version is the WIT's");
    }

    #[test]
    fn names_are_connector_ids_and_a_full_directory_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "Acme", "9lives", "acme_x", "acme-", "a/b", "../x"] {
            let request = Request { name: bad, lang: Lang::Rust, dir: dir.path(), sdk_path: None };
            assert!(matches!(create(&request), Err(ScaffoldError::BadName(_))), "{bad:?}");
        }
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let request = Request { name: "acme", lang: Lang::Js, dir: dir.path(), sdk_path: None };
        assert!(matches!(create(&request), Err(ScaffoldError::NotEmpty(_))));
        assert_eq!(std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(), "mine");
    }

    #[test]
    fn sdk_path_replaces_the_vendored_copy() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = Path::new("/src/gatehouse/plugins/sdk");
        let written =
            create(&Request { name: "acme", lang: Lang::Rust, dir: dir.path(), sdk_path: Some(sdk) }).unwrap();
        assert!(written.iter().all(|f| !f.starts_with("vendor/")), "{written:?}");
        let manifest = std::fs::read_to_string(dir.path().join("Cargo.toml")).unwrap();
        assert!(manifest.contains(r#"gatehouse-plugin = { path = "/src/gatehouse/plugins/sdk" }"#), "{manifest}");
    }

    #[test]
    fn every_placeholder_is_filled() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let dir = tempfile::tempdir().unwrap();
            let target = dir.path().join("acme-widgets");
            let written = create(&Request { name: "acme-widgets", lang, dir: &target, sdk_path: None }).unwrap();
            for file in written.iter().filter(|f| !f.starts_with("vendor/") && !f.starts_with("wit/")) {
                let text = std::fs::read_to_string(target.join(file)).unwrap();
                assert!(!text.contains("{{"), "{lang:?}: {file} keeps a placeholder");
            }
        }
        assert_eq!(title("acme-widgets-2"), "Acme Widgets 2");
    }
}
