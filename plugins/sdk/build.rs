//! Encodes the component-type metadata of each world `register!` can pick.
//!
//! A component exports exactly the interfaces named by the component-type
//! sections in its core module (wit-component unions them). The SDK's
//! bindings are generated once, for the world `full`, so that one set of
//! types and one `Connector` trait serve every connector; `register!` then
//! invokes only the export glue of the interfaces the connector has, and
//! places the metadata of the matching smaller world (`provider`,
//! `provider-with-oauth`, …) in the connector's own crate.
//!
//! wit-bindgen cannot produce those four worlds' metadata itself inside one
//! crate: each world would need its own `generate!` with a public export
//! macro, and every one of them defines a `#[macro_export]` macro for the
//! `connector` interface under the same name, which Rust refuses. Encoding
//! the metadata here, with the same wit-component that wit-bindgen uses,
//! gives identical bytes without that clash.
//!
//! The WIT names only some combinations of optional exports (`full`,
//! `everything`, …). The others a connector can register as, such as
//! `provider` plus `actions` and `syncs`, are synthesized here as copies of
//! `provider` with the chosen exports added, so `wit/` stays the contract
//! and needs no world per combination. A component's exports are interface
//! names (`gatehouse:plugin/syncs@0.4.0`), so the host sees no difference
//! between a written and a synthesized world. The `register!` macro, one
//! arm per combination, is written here too.

use std::{env, fs, path::PathBuf};

use wit_component::StringEncoding;
use wit_parser::{PackageId, Resolve, WorldId, WorldKey};

/// The optional exports, in the order `register!` names them.
const OPTIONAL: &[&str] = &["oauth", "actions", "syncs", "reach", "rotation"];

/// The worlds the WIT defines, by the optional exports they have.
const WRITTEN: &[(&str, &[&str])] = &[
    ("provider", &[]),
    ("provider-with-oauth", &["oauth"]),
    ("provider-with-actions", &["actions"]),
    ("provider-with-oauth-and-actions", &["oauth", "actions"]),
    ("full", &["oauth", "actions", "syncs"]),
    ("everything", &["oauth", "actions", "syncs", "reach", "rotation"]),
];

/// A copy of the world `provider` that also exports `interfaces` of the
/// same package, added to the package under `name`.
fn synthesize(resolve: &mut Resolve, package: PackageId, name: &str, interfaces: &[&str]) -> WorldId {
    let base = resolve.select_world(&[package], Some("provider")).expect("the WIT defines the world provider");
    let all = resolve.select_world(&[package], Some("everything")).expect("the WIT defines the world everything");
    let mut world = resolve.worlds[base].clone();
    world.name = name.to_string();
    world.includes.clear();
    for interface in interfaces {
        let id = *resolve.packages[package]
            .interfaces
            .get(*interface)
            .unwrap_or_else(|| panic!("the WIT has no interface {interface}"));
        // The export as `everything` declares it. Every optional interface
        // uses only `types`, which `provider` already imports (its
        // `connector` export uses it), so adding the export keeps the world
        // complete.
        let key = WorldKey::Interface(id);
        let item = resolve.worlds[all].exports.get(&key).cloned();
        let item = item.unwrap_or_else(|| panic!("the world everything does not export {interface}"));
        world.exports.insert(key, item);
    }
    let id = resolve.worlds.alloc(world);
    resolve.packages[package].worlds.insert(name.to_string(), id);
    id
}

/// One arm of `register!` per combination of optional exports.
fn register_macro(arms: &[(Vec<&str>, String, String)]) -> String {
    let mut text = String::from(
        "/// Exports a [`Connector`] as a component. Call it once, at the crate root,\n\
         /// naming the optional interfaces the connector has, in this order:\n\
         /// `oauth`, `actions`, `syncs`, `reach`, `rotation` (any of them, or none):\n\
         /// `register!(MyConnector)` exports manifest and verify only;\n\
         /// `register!(MyConnector, actions, syncs)` also actions and syncs.\n\
         ///\n\
         /// The component exports exactly those interfaces, so the host sees what\n\
         /// the connector really has; the trait's defaults of the others are never\n\
         /// exported. Each combination is a world of the WIT (`provider`,\n\
         /// `provider-with-oauth`, `full`, `everything`, …) or one the build script\n\
         /// synthesizes as `provider` plus those exports. On native targets it\n\
         /// expands to nothing, so the connector's logic can be unit-tested with a\n\
         /// plain `cargo test`.\n\
         #[macro_export]\nmacro_rules! register {\n",
    );
    for (exports, constant, world) in arms {
        let pattern: String = exports.iter().map(|e| format!(", {e}")).collect();
        let glue: Vec<String> = exports.iter().map(|e| format!("__register_{e}")).collect();
        text.push_str(&format!(
            "    ($connector:ident{pattern}) => {{\n        $crate::__register!($connector, {constant}, \"component-type:gatehouse-plugin:{world}\"; {});\n    }};\n",
            glue.join(" ")
        ));
    }
    text.push_str("}\n");
    text
}

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    // The crate's own copy of the contract, so it builds wherever it is.
    let wit = manifest_dir.join("wit");
    println!("cargo:rerun-if-changed={}", wit.join("provider.wit").display());
    println!("cargo:rerun-if-changed={}", wit.join("deps").display());

    let mut resolve = Resolve::default();
    let (package, _) =
        resolve.push_path(&wit).unwrap_or_else(|e| panic!("cannot read the WIT in {}: {e:?}", wit.display()));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut rust = String::from("// Generated by build.rs: component-type metadata per world.\n");
    let mut arms = Vec::new();
    for mask in 0..(1u32 << OPTIONAL.len()) {
        let exports: Vec<&str> =
            OPTIONAL.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, e)| *e).collect();
        let (world, id) = match WRITTEN.iter().find(|(_, has)| *has == exports.as_slice()) {
            Some((world, _)) => {
                let id =
                    resolve.select_world(&[package], Some(world)).unwrap_or_else(|e| panic!("no world {world}: {e:?}"));
                (world.to_string(), id)
            }
            None => {
                let world = format!("provider-with-{}", exports.join("-and-"));
                if resolve.select_world(&[package], Some(&world)).is_ok() {
                    panic!("the WIT now defines the world {world}; add it to WRITTEN");
                }
                let id = synthesize(&mut resolve, package, &world, &exports);
                (world, id)
            }
        };
        let constant = world.to_uppercase().replace('-', "_");
        let bytes = wit_component::metadata::encode(&resolve, id, StringEncoding::UTF8, None)
            .unwrap_or_else(|e| panic!("cannot encode the world {world}: {e:?}"));
        let file = format!("{world}.bin");
        fs::write(out.join(&file), &bytes).expect("OUT_DIR is writable");
        rust.push_str(&format!(
            "/// Component-type metadata of the world `{world}`.\npub const {constant}: &[u8; {}] = include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{file}\"));\n",
            bytes.len()
        ));
        arms.push((exports, constant, world));
    }
    fs::write(out.join("register.rs"), register_macro(&arms)).expect("OUT_DIR is writable");
    fs::write(out.join("worlds.rs"), rust).expect("OUT_DIR is writable");
}
