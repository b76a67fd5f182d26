//! One module per supported WIT version of `gatehouse:plugin`. `latest`
//! holds the bindings, the host imports and the conversions into
//! [`super::model`]; an older version's module holds only conversions of
//! its types into the latest ones and host imports that forward there.

mod frozen;
pub mod v0_1_0;
pub mod v0_2_0;
pub mod v0_3_0;
pub mod v0_4_0;

pub use v0_4_0 as latest;
