//! End-to-end tests: the real `gatehouse` binary over real HTTP against a
//! fake GitLab on loopback.

mod fake_gitlab;
mod fake_gitlab_api;
mod harness;
mod netns;

mod actions;
mod api;
mod browser;
mod cache;
mod cli;
mod egress;
mod errors;
mod example;
mod keys;
mod limits;
mod oauth;
mod proxy;
mod python;
mod reload;
mod sandbox;
mod secrets;
mod syncs;
mod tls;
mod versions;
