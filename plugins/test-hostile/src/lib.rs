//! A deliberately misbehaving connector for the host's sandbox tests. The
//! `mode` credential picks the misbehaviour; never load it in production.

// `VerifyError` is the WIT contract's type; its size is not ours to choose.
#![allow(clippy::result_large_err)]

use gatehouse_plugin::{
    Account, AuthMethod, Connector, Credentials, FieldKind, Manifest, ScopeRule, Verification, VerifyError, field,
    http, register,
};

pub struct Hostile;

impl Connector for Hostile {
    fn manifest() -> Manifest {
        Manifest {
            id: "hostile-test".into(),
            name: "Hostile test connector".into(),
            vendor: "Gatehouse tests".into(),
            auth_method: AuthMethod::PersonalAccessToken,
            description: "Misbehaves on purpose (loop, announce-loop, alloc, alloc-<MiB>, answer-<MiB>, random-<KiB>, resources-<count>, trap, trap-forge, recurse, egress, flood, log-flood, log-forge, leak, echo, remember) to test the sandbox. Test use only."
                .into(),
            notes: vec![],
            fields: vec![
                field("mode", "Mode", FieldKind::Text, true),
                gatehouse_plugin::Field {
                    default: Some("https://example.invalid".into()),
                    ..field("base_url", "Base URL", FieldKind::Url, false)
                },
                field("token", "Token", FieldKind::Secret, false),
            ],
            required_scopes: vec![],
            required_scopes_rule: ScopeRule::AllOf,
            version: env!("CARGO_PKG_VERSION").into(),
            oauth: None,
            credential_presentation: None,
            actions: vec![],
            sync_models: vec![],
            inbound_webhook: None,
        }
    }

    fn verify(credentials: &Credentials) -> Result<Verification, VerifyError> {
        let base_url = credentials.get("base_url").unwrap_or_default();
        let mode = credentials.require("mode")?;
        if let Some(mib) = mode.strip_prefix("alloc-").and_then(|m| m.parse::<usize>().ok()) {
            // Touches every byte, so the memory is really claimed.
            let big = vec![1u8; mib << 20];
            std::hint::black_box(&big);
            return Ok(verification("1", "hostile"));
        }
        if let Some(mib) = mode.strip_prefix("answer-").and_then(|m| m.parse::<usize>().ok()) {
            // An answer of that many MiB: the host must not copy it out.
            let huge = "a".repeat(mib << 20);
            let mut answer = verification("1", "");
            answer.account.username = huge;
            return Ok(answer);
        }
        if let Some(kib) = mode.strip_prefix("random-").and_then(|m| m.parse::<u64>().ok()) {
            std::hint::black_box(random_bytes(kib << 10));
            return Ok(verification("1", "hostile"));
        }
        if let Some(count) = mode.strip_prefix("resources-").and_then(|m| m.parse::<usize>().ok()) {
            std::hint::black_box(hold_resources(count));
            return Ok(verification("1", "hostile"));
        }
        match mode {
            "ok" => {}
            "log-flood" => {
                // One huge line, then far more lines than any budget.
                gatehouse_plugin::log::info(&"h".repeat(1 << 20), &[]);
                let line = "f".repeat(500);
                for i in 0..20_000 {
                    gatehouse_plugin::log::info(&format!("flood {i} {line}"), &[("n", &i.to_string())]);
                }
            }
            "log-forge" => {
                // Lines of its choosing, dressed as the host's own, and an
                // escape sequence for the terminal reading the log.
                let forged = "2026-01-01T00:00:00.000000Z  INFO gatehouse: forged host line";
                gatehouse_plugin::log::warn(
                    &format!("innocent\n{forged}\r\n{forged}\u{1b}[2J\u{2028}{forged}"),
                    &[("field", &format!("value\n{forged}"))],
                );
            }
            "echo" => {
                // Returns the token as the account: the host must not
                // pass it on, store it or log it.
                let token = credentials.get("token").unwrap_or_default();
                return Ok(Verification {
                    account: Account {
                        id: token.into(),
                        username: token.into(),
                        name: Some(format!("The {token} account")),
                        email: Some(format!("{token}@example.com")),
                        web_url: Some(format!("https://example.invalid/{token}")),
                        avatar_url: Some(format!("https://example.invalid/{token}.png")),
                    },
                    scopes: vec![token.into()],
                    expires_at: None,
                    token_kind: token.into(),
                });
            }
            "loop" | "announce-loop" => {
                if mode == "announce-loop" {
                    // Tells the test (through its fake upstream) that the
                    // call is running, then spins.
                    let _ = http::get(&format!("{base_url}/hostile/started"), &[]);
                }
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut big: Vec<u8> = Vec::with_capacity(1 << 30);
                big.resize(1 << 30, 1);
                std::hint::black_box(&big);
            }
            "trap" => panic!("hostile connector trapped on purpose"),
            "trap-forge" => {
                // Its last words (stderr) end up in the host log: a carriage
                // return would draw the rest over the host's own line.
                panic!("hostile connector trapped\r2026-01-01T00:00:00.000000Z  INFO gatehouse: forged\u{1b}[2J")
            }
            "recurse" => {
                std::hint::black_box(recurse(u64::MAX));
            }
            "remember" => {
                // Keeps this call's token in a static and its heap; a later
                // call that finds it would be reading another call's memory.
                let token = credentials.get("token").unwrap_or_default();
                let mut earlier = EARLIER_TOKEN.lock().unwrap_or_else(|e| e.into_inner());
                if !earlier.is_empty() {
                    return Err(VerifyError::InvalidInput(format!("an earlier call left {earlier:?} behind")));
                }
                *earlier = token.to_string();
            }
            "egress" => {
                http::get("http://169.254.169.254/latest/meta-data/", &[])?;
            }
            "flood" => {
                for _ in 0..1000 {
                    let _ = http::get(&format!("{base_url}/api/v4/user"), &[]);
                }
            }
            "leak" => {
                // Tries to smuggle the secret out through logs and errors.
                let token = credentials.get("token").unwrap_or_default();
                gatehouse_plugin::log::warn(&format!("the token is {token}"), &[("token", token)]);
                return Err(VerifyError::InvalidToken(format!("token {token} refused")));
            }
            other => return Err(VerifyError::InvalidInput(format!("unknown mode {other:?}"))),
        }
        Ok(verification("1", "hostile"))
    }
}

fn verification(id: &str, username: &str) -> Verification {
    Verification {
        account: Account {
            id: id.into(),
            username: username.into(),
            name: None,
            email: None,
            web_url: None,
            avatar_url: None,
        },
        scopes: vec![],
        expires_at: None,
        token_kind: "test".into(),
    }
}

/// `len` bytes from `wasi:random` in one request.
#[cfg(target_arch = "wasm32")]
fn random_bytes(len: u64) -> Vec<u8> {
    wasip2::random::random::get_random_bytes(len)
}

#[cfg(not(target_arch = "wasm32"))]
fn random_bytes(len: u64) -> Vec<u8> {
    vec![0; len as usize]
}

/// Holds `count` host resources (pollables) at once.
#[cfg(target_arch = "wasm32")]
fn hold_resources(count: usize) -> usize {
    let held: Vec<_> = (0..count).map(|_| wasip2::clocks::monotonic_clock::subscribe_duration(1_000_000_000)).collect();
    held.len()
}

#[cfg(not(target_arch = "wasm32"))]
fn hold_resources(count: usize) -> usize {
    count
}

static EARLIER_TOKEN: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Recurses until the shadow stack runs out (the frame buffer keeps the
/// optimiser from turning it into a loop).
fn recurse(n: u64) -> u64 {
    let frame = std::hint::black_box([n; 32]);
    if n == 0 { frame[1] } else { recurse(n - 1).wrapping_add(frame[7]) }
}

register!(Hostile);
