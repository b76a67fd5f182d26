//! End-to-end tests: the real `gatehouse` binary over real HTTP against a
//! fake GitLab on loopback; and (`services`) the host's services driven as
//! a library against the same fake.

mod fake_gitlab;
mod fake_gitlab_api;
mod harness;
mod netns;
mod postgres;

mod actions;
mod api;
mod browser;
mod cache;
mod cli;
mod clients;
mod conformance;
mod egress;
mod errors;
mod example;
mod keys;
mod kit;
mod limits;
mod multiprocess;
mod oauth;
mod operations;
mod plugins_dir;
mod proxy;
mod python;
mod reload;
mod sandbox;
mod secrets;
mod services;
mod sessions;
mod startup;
mod syncs;
mod tls;
mod tokens;
mod versions;
