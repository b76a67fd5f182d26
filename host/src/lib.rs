//! The Gatehouse host as a library: the `gatehouse` binary and the
//! benchmarks are built on it.

// Errors carry a whole problem (sentences, scopes) and only travel the cold
// path of a request; boxing them would buy nothing measurable.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod clock;
pub mod config;
pub mod context;
pub mod crypto;
pub mod egress;
pub mod error;
pub mod files;
pub mod keys;
pub mod locks;
pub mod metrics;
pub mod problem;
pub mod registry;
pub mod runtime;
pub mod scaffold;
pub mod server;
pub mod services;
pub mod store;

/// First-party connectors, built from `plugins/` and embedded by build.rs.
pub mod builtin {
    /// A first-party connector carried in the binary.
    pub struct Builtin {
        /// `builtin:<crate name>`.
        pub name: &'static str,
        pub wasm: &'static [u8],
        /// Of `wasm`, in hex, computed when the binary was built.
        pub sha256: &'static str,
    }

    include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

    #[cfg(test)]
    mod tests {
        #[test]
        fn the_digests_built_in_are_those_of_the_components() {
            assert!(!super::BUILTIN.is_empty());
            for builtin in super::BUILTIN {
                assert_eq!(crate::crypto::sha256_hex(builtin.wasm), builtin.sha256, "{}", builtin.name);
            }
        }
    }
}

use std::{path::Path, sync::Arc};

/// The connector runtime as `serve` configures it.
pub fn build_runtime(
    limits: &config::SandboxLimits,
    policy: egress::Policy,
    ca_bundle: Option<&Path>,
    egress_proxy: Option<egress::EgressProxy>,
) -> anyhow::Result<runtime::Runtime> {
    let http = egress::HttpLimits {
        timeout: limits.http_timeout,
        max_response_bytes: limits.max_response_bytes,
        max_requests_per_call: limits.max_outbound_requests,
    };
    let egress = Arc::new(egress::Egress::new(policy, http, ca_bundle, egress_proxy)?);
    runtime::Runtime::new(
        egress,
        runtime::RuntimeLimits {
            call_timeout: limits.plugin_timeout,
            memory_bytes: usize::try_from(limits.plugin_memory_mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX),
            concurrent_calls: limits.max_concurrent_calls.max(1),
            keep_resident_bytes: usize::try_from(limits.plugin_keep_resident_kib.saturating_mul(1024))
                .unwrap_or(usize::MAX),
            max_call_wait: limits.max_call_wait,
            max_answer_bytes: limits.plugin_max_answer_bytes,
            log: runtime::guest_log::LogBudget { lines: limits.plugin_log_lines, bytes: limits.plugin_log_bytes },
        },
    )
}
