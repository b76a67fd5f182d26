//! A connector whose manifest breaks four of the host's rules at once (an
//! id with capitals and a space, a version that is not semver, a field key
//! listed twice, a secret with a default): `gatehouse plugins validate`
//! must name all four in one run, and the loader must refuse it visibly.
#![allow(clippy::result_large_err)] // `VerifyError` is the WIT's type

use gatehouse_plugin::{
    Connector, Credentials, Field, FieldKind, Manifest, Verification, VerifyError, field, register,
};

pub struct BadManifest;

impl Connector for BadManifest {
    fn manifest() -> Manifest {
        Manifest {
            fields: vec![
                Field { default: Some("hunter2".into()), ..field("token", "Token", FieldKind::Secret, true) },
                field("token", "Token again", FieldKind::Text, false),
            ],
            ..Manifest::new("Bad Id", "A manifest with four mistakes", "not-semver")
        }
    }

    fn verify(_: &Credentials) -> Result<Verification, VerifyError> {
        Err(VerifyError::InvalidInput("never loaded".into()))
    }
}

register!(BadManifest);
