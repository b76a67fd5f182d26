//! End-to-end tests: the real `gatehouse` binary over real HTTP against a
//! fake GitLab on loopback.

mod fake_gitlab;
mod harness;

mod api;
mod browser;
mod cache;
mod cli;
mod egress;
mod errors;
mod example;
mod oauth;
mod python;
mod reload;
mod sandbox;
mod secrets;
mod tls;
mod versions;
