//! Secrets at rest: the master key ring (one key seals, every key opens
//! what it sealed), AES-256-GCM sealing bound to the owning record
//! (`Binding`), keys derived for other purposes, and API key hashing. Where
//! the key lives is `keys`' concern.

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, AeadCore, OsRng, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD};
use hkdf::Hkdf;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
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

/// One AES-256 key. Its id is derived from the key, so a record says which
/// key sealed it and a wrong key is reported as such, not as tampering.
struct Key {
    id: String,
    cipher: Aes256Gcm,
    bytes: SecretSlice<u8>,
}

impl Key {
    fn new(bytes: &SecretSlice<u8>) -> Self {
        let raw = bytes.expose_secret();
        let cipher = Aes256Gcm::new_from_slice(raw).expect("callers pass 32 bytes");
        Self { id: key_id(bytes), cipher, bytes: SecretSlice::from(raw.to_vec()) }
    }
}

/// The master key ring: the first key seals, every key opens what it
/// sealed. It holds more than one key only while `gatehouse keys rotate`
/// re-seals everything under a new key, so an interrupted rotation leaves
/// every value readable.
pub struct MasterKey {
    keys: Vec<Key>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("ids", &self.ids()).finish_non_exhaustive()
    }
}

impl MasterKey {
    /// A ring of one key. `bytes` must be 32 bytes (`parse_key` checks).
    pub fn from_bytes(bytes: &SecretSlice<u8>) -> Self {
        Self { keys: vec![Key::new(bytes)] }
    }

    /// A ring sealing with `sealing` and opening with it and `older`; a key
    /// given twice is kept once.
    pub fn ring(sealing: &SecretSlice<u8>, older: &[SecretSlice<u8>]) -> Self {
        let mut keys = vec![Key::new(sealing)];
        for bytes in older {
            let key = Key::new(bytes);
            if !keys.iter().any(|k| k.id == key.id) {
                keys.push(key);
            }
        }
        Self { keys }
    }

    /// The id of the sealing key.
    pub fn id(&self) -> &str {
        &self.keys[0].id
    }

    /// Every key's id, the sealing key's first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    pub fn has(&self, key_id: &str) -> bool {
        self.keys.iter().any(|k| k.id == key_id)
    }

    /// Seals a secret under the sealing key so it only opens for the same
    /// `binding`.
    pub fn seal(&self, binding: Binding<'_>, secret: &str) -> Sealed {
        let key = &self.keys[0];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = aad(&key.id, binding);
        let ciphertext = key
            .cipher
            .encrypt(&nonce, Payload { msg: secret.as_bytes(), aad: &aad })
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        Sealed { key_id: key.id.clone(), nonce: nonce.to_vec(), ciphertext }
    }

    /// Opens what `seal` sealed for the same binding, with whichever key of
    /// the ring sealed it.
    pub fn open(&self, binding: Binding<'_>, sealed: &Sealed) -> Result<SecretString, CryptoError> {
        let Some(key) = self.keys.iter().find(|k| k.id == sealed.key_id) else {
            return Err(CryptoError::UnknownKey(sealed.key_id.clone()));
        };
        if sealed.nonce.len() != 12 {
            return Err(CryptoError::Open);
        }
        let aad = aad(&key.id, binding);
        let plain = key
            .cipher
            .decrypt(Nonce::from_slice(&sealed.nonce), Payload { msg: &sealed.ciphertext, aad: &aad })
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(plain).map(SecretString::from).map_err(|_| CryptoError::Open)
    }

    /// A key for another purpose (HKDF-SHA256 of the sealing key with
    /// `purpose` as info): whoever lacks the master key cannot compute it,
    /// and it changes when the master key is rotated.
    pub fn derive(&self, purpose: &str) -> SecretSlice<u8> {
        let mut out = vec![0u8; 32];
        Hkdf::<Sha256>::new(None, self.keys[0].bytes.expose_secret())
            .expand(purpose.as_bytes(), &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        SecretSlice::from(out)
    }
}

fn aad(key_id: &str, binding: Binding<'_>) -> Vec<u8> {
    format!("gatehouse:v1:{key_id}:{}", binding.text()).into_bytes()
}

/// The id a key is known by in sealed records and logs: not secret, a
/// truncated hash that cannot be turned back into the key.
pub fn key_id(bytes: &SecretSlice<u8>) -> String {
    let digest = Sha256::digest([b"gatehouse-key-id:".as_slice(), bytes.expose_secret()].concat());
    hex(&digest[..6])
}

/// A key as written in a key file or `GATEHOUSE_MASTER_KEY`: base64 of
/// exactly 32 bytes.
pub fn parse_key(text: &str) -> Option<SecretSlice<u8>> {
    let bytes = STANDARD.decode(text.trim()).ok()?;
    (bytes.len() == 32).then(|| SecretSlice::from(bytes))
}

/// The text `parse_key` reads.
pub fn encode_key(bytes: &SecretSlice<u8>) -> SecretString {
    SecretString::from(STANDARD.encode(bytes.expose_secret()))
}

/// A new random 32-byte key.
pub fn generate_key() -> SecretSlice<u8> {
    let mut key = vec![0u8; 32];
    OsRng.fill_bytes(&mut key);
    SecretSlice::from(key)
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
    fn a_ring_seals_with_its_first_key_and_opens_with_any() {
        let (old, new) = (SecretSlice::from(vec![7u8; 32]), SecretSlice::from(vec![8u8; 32]));
        let before = key().seal(Binding::Credentials("a"), "old secret");
        let ring = MasterKey::ring(&new, &[old]);
        let after = ring.seal(Binding::Credentials("b"), "new secret");
        assert_eq!(after.key_id, key_id(&new));
        assert_eq!(ring.ids(), [key_id(&new).as_str(), key().id()]);
        assert_eq!(ring.open(Binding::Credentials("a"), &before).unwrap().expose_secret(), "old secret");
        assert_eq!(ring.open(Binding::Credentials("b"), &after).unwrap().expose_secret(), "new secret");
        // The old key alone does not open what the new one sealed.
        assert!(matches!(key().open(Binding::Credentials("b"), &after), Err(CryptoError::UnknownKey(_))));
    }

    #[test]
    fn derived_keys_depend_on_the_purpose_and_the_sealing_key() {
        let k = key();
        assert_eq!(k.derive("a").expose_secret(), key().derive("a").expose_secret());
        assert_ne!(k.derive("a").expose_secret(), k.derive("b").expose_secret());
        let other = MasterKey::from_bytes(&SecretSlice::from(vec![8u8; 32]));
        assert_ne!(k.derive("a").expose_secret(), other.derive("a").expose_secret());
        assert_ne!(k.derive("a").expose_secret(), [7u8; 32].as_slice());
    }

    #[test]
    fn keys_are_base64_of_32_bytes() {
        let k = generate_key();
        assert_eq!(parse_key(encode_key(&k).expose_secret()).unwrap().expose_secret(), k.expose_secret());
        assert!(parse_key(&STANDARD.encode([1u8; 16])).is_none());
        assert!(parse_key("not base64!").is_none());
    }

    #[test]
    fn debug_does_not_show_key_material() {
        let text = format!("{:?}", key());
        assert!(text.contains("MasterKey") && !text.contains("7, 7"));
    }
}
