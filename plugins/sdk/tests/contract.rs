//! The SDK's version is the version of the contract it carries: a connector
//! author reads one number.

#[test]
fn the_sdk_version_is_the_wit_package_version() {
    let wit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/wit/provider.wit")).unwrap();
    let package = wit.lines().find(|l| l.starts_with("package ")).expect("the WIT names its package");
    assert_eq!(package, format!("package gatehouse:plugin@{};", env!("CARGO_PKG_VERSION")));
}
