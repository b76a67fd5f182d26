//! Secrets at rest: the master key (from the environment or a 0600 key
//! file), AES-256-GCM sealing bound to the owning record (`Binding`), and
//! API key hashing.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, AeadCore, OsRng, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("GATEHOUSE_MASTER_KEY must be base64 of exactly 32 bytes")]
    BadEnvKey,
    #[error("key file {path} is not base64 of exactly 32 bytes; restore it from backup")]
    BadKeyFile { path: PathBuf },
    #[error("cannot read or create key file {path}: {source}")]
    KeyFileIo { path: PathBuf, source: std::io::Error },
    #[error("secret was sealed with key {0}, which is not loaded")]
    UnknownKey(String),
    #[error("secret cannot be decrypted: wrong key or tampered record")]
    Open,
}

/// A sealed secret as stored: which key, the nonce, and ciphertext+tag.
#[derive(Clone)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// What a ciphertext belongs to. It is authenticated with the ciphertext, so
/// a sealed value copied onto another record, or into another role on the
/// same record, does not open. The texts are stored facts: never change one.
#[derive(Debug, Clone, Copy)]
pub enum Binding<'a> {
    /// An integration's credentials, by integration id.
    Credentials(&'a str),
    /// An integration's OAuth refresh token, by integration id.
    RefreshToken(&'a str),
    /// The PKCE verifier of an authorization in flight, by state hash.
    OAuthVerifier(&'a str),
    /// An OAuth application's client secret, by its unique provider and base URL.
    OAuthApp { provider: &'a str, base_url: &'a str },
    /// An outgoing webhook's signing secret, by webhook id.
    Webhook(&'a str),
    /// The token a provider's webhook must present, by integration id.
    InboundWebhook(&'a str),
}

impl Binding<'_> {
    fn text(self) -> String {
        match self {
            Self::Credentials(id) => id.to_string(),
            Self::RefreshToken(id) => format!("{id}/refresh"),
            Self::OAuthVerifier(state_hash) => format!("oauth-state/{state_hash}"),
            Self::OAuthApp { provider, base_url } => format!("oauth-app/{provider}/{base_url}"),
            Self::Webhook(id) => format!("webhook/{id}"),
            Self::InboundWebhook(id) => format!("{id}/inbound-webhook"),
        }
    }
}

/// The AEAD key. Its id is derived from the key, so a record says which key
/// sealed it and a wrong key is reported as such, not as tampering.
pub struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &SecretSlice<u8>) -> Self {
        let bytes = bytes.expose_secret();
        let digest = Sha256::digest([b"gatehouse-key-id:".as_slice(), bytes].concat());
        let id = hex(&digest[..6]);
        let cipher = Aes256Gcm::new_from_slice(bytes).expect("caller checked 32 bytes");
        Self { id, cipher }
    }

    /// `GATEHOUSE_MASTER_KEY` when set, else `<data_dir>/master.key`, created
    /// with mode 0600 on first start.
    pub fn load(env_value: Option<&SecretString>, data_dir: &Path) -> Result<Self, CryptoError> {
        if let Some(value) = env_value {
            return decode_key(value.expose_secret()).map(|k| Self::from_bytes(&k)).ok_or(CryptoError::BadEnvKey);
        }
        let path = data_dir.join("master.key");
        let io = |source| CryptoError::KeyFileIo { path: path.clone(), source };
        match fs::read_to_string(&path) {
            Ok(text) => decode_key(text.trim())
                .map(|k| Self::from_bytes(&k))
                .ok_or(CryptoError::BadKeyFile { path: path.clone() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = vec![0u8; 32];
                OsRng.fill_bytes(&mut key);
                let mut options = fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&path).map_err(io)?;
                file.write_all(STANDARD.encode(&key).as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(Self::from_bytes(&SecretSlice::from(key)))
            }
            Err(e) => Err(io(e)),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals a secret so it only opens for the same `binding`.
    pub fn seal(&self, binding: Binding<'_>, secret: &str) -> Sealed {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = self.aad(binding);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, Payload { msg: secret.as_bytes(), aad: &aad })
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        Sealed { key_id: self.id.clone(), nonce: nonce.to_vec(), ciphertext }
    }

    /// Opens what `seal` sealed for the same binding.
    pub fn open(&self, binding: Binding<'_>, sealed: &Sealed) -> Result<SecretString, CryptoError> {
        if sealed.key_id != self.id {
            return Err(CryptoError::UnknownKey(sealed.key_id.clone()));
        }
        if sealed.nonce.len() != 12 {
            return Err(CryptoError::Open);
        }
        let aad = self.aad(binding);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(&sealed.nonce), Payload { msg: &sealed.ciphertext, aad: &aad })
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(plain).map(SecretString::from).map_err(|_| CryptoError::Open)
    }

    fn aad(&self, binding: Binding<'_>) -> Vec<u8> {
        format!("gatehouse:v1:{}:{}", self.id, binding.text()).into_bytes()
    }
}

fn decode_key(text: &str) -> Option<SecretSlice<u8>> {
    let bytes = STANDARD.decode(text.trim()).ok()?;
    (bytes.len() == 32).then(|| SecretSlice::from(bytes))
}

/// A new API key: 32 random bytes, URL-safe, with a recognisable prefix so
/// secret scanners can find leaked keys.
pub fn generate_api_key() -> SecretString {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    SecretString::from(format!("gh_{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// 32 random bytes, base64url: OAuth `state` values and PKCE verifiers
/// (43 characters, inside RFC 7636's 43-128).
pub fn random_token() -> SecretString {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    SecretString::from(URL_SAFE_NO_PAD.encode(bytes))
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn pkce_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// API keys are long random strings, so a plain SHA-256 is enough: there is
/// nothing to brute-force that a slow hash would protect.
pub fn hash_api_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
#[test]
fn pkce_matches_rfc_7636_appendix_b() {
    assert_eq!(pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Compares in constant time so response timing does not reveal a prefix.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::from_bytes(&SecretSlice::from(vec![7u8; 32]))
    }

    #[test]
    fn sealed_secret_opens_only_for_its_binding() {
        let k = key();
        let sealed = k.seal(Binding::Credentials("id-1"), "glpat-secret");
        assert!(!sealed.ciphertext.windows(12).any(|w| w == b"glpat-secret"));
        assert_eq!(k.open(Binding::Credentials("id-1"), &sealed).unwrap().expose_secret(), "glpat-secret");
        assert!(matches!(k.open(Binding::Credentials("id-2"), &sealed), Err(CryptoError::Open)));
        // The same record, another role: a credential is not a refresh token.
        assert!(matches!(k.open(Binding::RefreshToken("id-1"), &sealed), Err(CryptoError::Open)));
    }

    #[test]
    fn binding_texts_are_stable() {
        // Stored ciphertexts are authenticated with these texts.
        let texts = [
            Binding::Credentials("i").text(),
            Binding::RefreshToken("i").text(),
            Binding::OAuthVerifier("h").text(),
            Binding::OAuthApp { provider: "p", base_url: "https://x" }.text(),
            Binding::Webhook("w").text(),
            Binding::InboundWebhook("i").text(),
        ];
        assert_eq!(
            texts,
            ["i", "i/refresh", "oauth-state/h", "oauth-app/p/https://x", "webhook/w", "i/inbound-webhook"]
        );
    }

    #[test]
    fn tampered_ciphertext_is_refused() {
        let k = key();
        let mut sealed = k.seal(Binding::Webhook("id"), "secret");
        sealed.ciphertext[0] ^= 1;
        assert!(k.open(Binding::Webhook("id"), &sealed).is_err());
    }

    #[test]
    fn other_key_is_reported_by_id() {
        let sealed = key().seal(Binding::Credentials("id"), "secret");
        let other = MasterKey::from_bytes(&SecretSlice::from(vec![8u8; 32]));
        assert!(matches!(other.open(Binding::Credentials("id"), &sealed), Err(CryptoError::UnknownKey(_))));
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = MasterKey::load(None, dir.path()).unwrap();
        let second = MasterKey::load(None, dir.path()).unwrap();
        assert_eq!(first.id(), second.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("master.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn bad_env_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let short = SecretString::from(STANDARD.encode([1u8; 16]));
        assert!(matches!(MasterKey::load(Some(&short), dir.path()), Err(CryptoError::BadEnvKey)));
    }

    #[test]
    fn debug_does_not_show_key_material() {
        let text = format!("{:?}", key());
        assert!(text.contains("MasterKey") && !text.contains("7, 7"));
    }
}
