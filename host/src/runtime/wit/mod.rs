//! One module per supported WIT version of `gatehouse:plugin`, each turning
//! its generated types into [`super::model`] at the edge. `latest` names the
//! version new connectors should target.

pub mod v0_1_0;
pub mod v0_2_0;

#[allow(unused_imports)]
pub use v0_2_0 as latest;
