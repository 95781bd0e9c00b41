//! Connection secrets sealed at rest.
//!
//! Config values under `secret.` (today `secret.authorization`, the credential the host attaches
//! to a connector's allowed egress requests) are stored sealed with ChaCha20-Poly1305 under a
//! 256-bit key that never enters the database: `<data dir>/secret.key` by default, or the file
//! named by `IDPLEX_SECRET_KEY_FILE` (replicas sharing one PostgreSQL database must share it). A
//! dump or backup of the database alone reveals no secret. The key name is the AEAD's
//! associated data, so a sealed value moved to another key fails to open. Values stored before
//! sealing existed (no prefix) are read as they are and sealed on their next write.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Prefix of a sealed value: version 1 is `nonce ‖ ciphertext ‖ tag`, base64 without padding.
pub const SEALED_PREFIX: &str = "idplex-sealed:v1:";

const KEY_LEN: usize = 32;

/// Why a secret could not be sealed, opened or its key loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read or create the secret key file {path}: {detail}")]
    KeyFile { path: String, detail: String },
    #[error(
        "{name} cannot be opened with this secret key (another key file, or the value was tampered with); restore the key file the value was sealed with, or set the secret again"
    )]
    CannotOpen { name: String },
}

/// The key sealing connection secrets.
pub struct SecretKey {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> SecretKey {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("a 32-byte ChaCha20-Poly1305 key");
        SecretKey { key: LessSafeKey::new(unbound), rng: SystemRandom::new() }
    }

    /// A new random key that lives only in this process (tests, in-memory stores).
    pub fn ephemeral() -> SecretKey {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new().fill(&mut bytes).expect("the system's random source");
        SecretKey::from_bytes(&bytes)
    }

    /// The key in `path` (64 hex digits), created with a new random key (mode 0600) when the
    /// file does not exist. Several processes starting at once agree on one key: the file is
    /// created exclusively, and a loser reads the winner's.
    pub fn load_or_create(path: &Path) -> Result<SecretKey, SecretError> {
        SecretKey::read(path, true)
    }

    /// The key in `path`, which must exist: a missing file is an error naming it (the admin
    /// CLI never makes a key, which would seal secrets the server cannot open).
    pub fn load(path: &Path) -> Result<SecretKey, SecretError> {
        SecretKey::read(path, false)
    }

    fn read(path: &Path, create_missing: bool) -> Result<SecretKey, SecretError> {
        let fail = |detail: String| SecretError::KeyFile { path: path.display().to_string(), detail };
        for _ in 0..50 {
            match std::fs::read_to_string(path) {
                Ok(text) if text.trim().len() == 2 * KEY_LEN => {
                    let bytes = hex::decode(text.trim()).map_err(|e| fail(format!("not hex: {e}")))?;
                    let bytes: [u8; KEY_LEN] = bytes.try_into().expect("32 bytes from 64 hex digits");
                    return Ok(SecretKey::from_bytes(&bytes));
                }
                // Being written by another process right now: wait for it.
                Ok(text) if text.is_empty() => std::thread::sleep(std::time::Duration::from_millis(10)),
                Ok(_) => return Err(fail(format!("expected {} hex digits", 2 * KEY_LEN))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && create_missing => {
                    create(path).map_err(|e| fail(e.to_string()))?
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(fail(
                        "there is no such file; `idplex serve` or `idplex init` creates it, and replicas sharing a database must share it (IDPLEX_SECRET_KEY_FILE)".into(),
                    ));
                }
                Err(e) => return Err(fail(e.to_string())),
            }
        }
        Err(fail("the file stayed empty".into()))
    }

    /// `plaintext` sealed for the config key `name`.
    pub fn seal(&self, name: &str, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).expect("the system's random source");
        let mut data = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(name.as_bytes()), &mut data)
            .expect("sealing cannot fail for in-memory sizes");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        format!("{SEALED_PREFIX}{}", B64.encode(out))
    }

    /// The plaintext of the value stored for `name`: opened if sealed, as it is if it predates
    /// sealing.
    pub fn open(&self, name: &str, stored: &str) -> Result<String, SecretError> {
        let Some(sealed) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_string());
        };
        let cannot = || SecretError::CannotOpen { name: name.to_string() };
        let mut bytes = B64.decode(sealed).map_err(|_| cannot())?;
        if bytes.len() < NONCE_LEN {
            return Err(cannot());
        }
        let mut data = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| cannot())?;
        let plain = self.key.open_in_place(nonce, Aad::from(name.as_bytes()), &mut data).map_err(|_| cannot())?;
        String::from_utf8(plain.to_vec()).map_err(|_| cannot())
    }

    /// `config` with every `secret.*` value sealed (values already sealed are left alone).
    pub fn seal_config(&self, config: serde_json::Value) -> serde_json::Value {
        match config {
            serde_json::Value::Object(map) => serde_json::Value::Object(
                map.into_iter()
                    .map(|(k, v)| {
                        if !k.starts_with(crate::SECRET_PREFIX) {
                            return (k, v);
                        }
                        let text = match v {
                            serde_json::Value::String(s) if s.starts_with(SEALED_PREFIX) => return (k, serde_json::Value::String(s)),
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        };
                        let sealed = self.seal(&k, &text);
                        (k, serde_json::Value::String(sealed))
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}

/// Write a new random key to `path` unless the file exists (then another process won).
fn create(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut bytes = [0u8; KEY_LEN];
    SystemRandom::new().fill(&mut bytes).map_err(|_| std::io::Error::other("no system random source"))?;
    file.write_all(hex::encode(bytes).as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_name() {
        let key = SecretKey::ephemeral();
        let sealed = key.seal("secret.authorization", "Bearer s3cr3t");
        assert!(sealed.starts_with(SEALED_PREFIX) && !sealed.contains("s3cr3t"), "{sealed}");
        assert_ne!(sealed, key.seal("secret.authorization", "Bearer s3cr3t"), "a fresh nonce each time");
        assert_eq!(key.open("secret.authorization", &sealed).unwrap(), "Bearer s3cr3t");

        let err = key.open("secret.other", &sealed).unwrap_err();
        assert!(err.to_string().contains("secret.other cannot be opened"), "{err}");
        assert!(SecretKey::ephemeral().open("secret.authorization", &sealed).is_err(), "another key");
        let mut tampered = sealed.clone();
        tampered.push('A');
        assert!(key.open("secret.authorization", &tampered).is_err());
        assert!(key.open("secret.authorization", &format!("{SEALED_PREFIX}!!")).is_err());

        // A value stored before sealing existed reads as it is.
        assert_eq!(key.open("secret.authorization", "Bearer legacy").unwrap(), "Bearer legacy");
    }

    #[test]
    fn config_sealing_touches_secrets_only_and_only_once() {
        let key = SecretKey::ephemeral();
        let config = serde_json::json!({"tenant": "acme", "secret.authorization": "Bearer x", "secret.n": 7});
        let sealed = key.seal_config(config);
        assert_eq!(sealed["tenant"], "acme");
        let auth = sealed["secret.authorization"].as_str().unwrap();
        assert_eq!(key.open("secret.authorization", auth).unwrap(), "Bearer x");
        assert_eq!(key.open("secret.n", sealed["secret.n"].as_str().unwrap()).unwrap(), "7");
        assert_eq!(key.seal_config(sealed.clone()), sealed, "sealing twice changes nothing");
    }

    #[test]
    fn the_key_file_is_created_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || SecretKey::load_or_create(&path).unwrap().seal("secret.a", "v"))
            })
            .collect();
        let sealed: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let key = SecretKey::load_or_create(&path).unwrap();
        for s in &sealed {
            assert_eq!(key.open("secret.a", s).unwrap(), "v", "every process got the same key");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&path, "short").unwrap();
        let err = SecretKey::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("expected 64 hex digits"), "{err}");
    }
}
