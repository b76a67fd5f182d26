//! Paths of the test components built from `plugins/` (see build.rs).

include!(concat!(env!("OUT_DIR"), "/programs.rs"));
