//! Server keys: this server's ed25519 signing key, in Synapse's key file format
//! (`ed25519 <version> <unpadded base64 seed>`, one key a line) so existing keys load,
//! (other servers' keys are `services::remote_keys`).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use rand::Rng;
use rand::distributions::Alphanumeric;
use ruma::api::federation::discovery::{ServerSigningKeys as KeyResponse, VerifyKey};
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::serde::{Base64, Raw};
use ruma::signatures::{Ed25519KeyPair, sign_json};
use ruma::{MilliSecondsSinceUnixEpoch, OwnedServerName, OwnedServerSigningKeyId, ServerName, UInt};
use serde_json::Value;

/// The ed25519 algorithm identifier (RFC 8410), needed to build a key pair from a raw seed.
const ED25519_OID: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.3.101.112");

/// How long other servers may cache our verify key, as Synapse's `key_refresh_interval`.
const KEY_VALIDITY: Duration = Duration::from_secs(24 * 60 * 60);

pub struct ServerKeys {
    server_name: OwnedServerName,
    key_pair: Ed25519KeyPair,
}

impl ServerKeys {
    pub fn load(server_name: OwnedServerName, path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("signing_key_path: cannot read {}", path.display()))?;
        let key_pair = parse_key_file(&text)
            .with_context(|| format!("signing_key_path: {} is not a valid signing key file", path.display()))?;
        Ok(Self { server_name, key_pair })
    }

    /// Writes a fresh key file; refuses to overwrite an existing one.
    pub fn generate_file(path: &Path) -> anyhow::Result<()> {
        if path.exists() {
            bail!("{} already exists; not overwriting a signing key", path.display());
        }
        let seed: [u8; 32] = rand::rngs::OsRng.r#gen();
        let version: String = rand::rngs::OsRng.sample_iter(&Alphanumeric).take(4).map(char::from).collect();
        let line = format!("ed25519 a_{version} {}\n", STANDARD_NO_PAD.encode(seed));
        std::fs::write(path, line).with_context(|| format!("cannot write {}", path.display()))?;
        restrict_permissions(path)?;
        Ok(())
    }

    pub fn key_pair(&self) -> &Ed25519KeyPair {
        &self.key_pair
    }

    pub fn server_name(&self) -> &ServerName {
        &self.server_name
    }

    /// `ed25519:<version>`.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.key_pair.version())
    }

    pub fn public_key_base64(&self) -> String {
        STANDARD_NO_PAD.encode(self.key_pair.public_key())
    }

    /// Adds this server's signature to a JSON object.
    pub fn sign(&self, object: &mut CanonicalJsonObject) -> anyhow::Result<()> {
        sign_json(self.server_name.as_str(), &self.key_pair, object)?;
        Ok(())
    }

    /// Adds the content hash and this server's signature to a PDU.
    pub fn hash_and_sign_event(
        &self,
        object: &mut CanonicalJsonObject,
        rules: &ruma::room_version_rules::RedactionRules,
    ) -> anyhow::Result<()> {
        ruma::signatures::hash_and_sign_event(self.server_name.as_str(), &self.key_pair, object, rules)?;
        Ok(())
    }

    /// The public keys other servers would use to verify our signatures.
    pub fn public_key_map(&self) -> ruma::signatures::PublicKeyMap {
        let mut key_set = ruma::signatures::PublicKeySet::new();
        key_set.insert(self.key_id(), ruma::serde::Base64::new(self.key_pair.public_key().to_vec()));
        let mut map = ruma::signatures::PublicKeyMap::new();
        map.insert(self.server_name.to_string(), key_set);
        map
    }

    /// The signed body of `GET /_matrix/key/v2/server`.
    pub fn signed_key_response(&self) -> anyhow::Result<Raw<KeyResponse>> {
        let valid_until = SystemTime::now() + KEY_VALIDITY;
        let valid_until_ts = valid_until.duration_since(UNIX_EPOCH)?.as_millis() as u64;
        let valid_until_ts = MilliSecondsSinceUnixEpoch(UInt::try_from(valid_until_ts)?);
        let mut keys = KeyResponse::new(self.server_name.clone(), valid_until_ts);
        let key = VerifyKey::new(Base64::new(self.key_pair.public_key().to_vec()));
        keys.verify_keys.insert(OwnedServerSigningKeyId::try_from(self.key_id())?, key);
        let mut object = ruma::canonical_json::to_canonical_value(&keys)?;
        let CanonicalJsonValue::Object(object) = &mut object else { bail!("a key response is an object") };
        self.sign(object)?;
        Ok(Raw::from_json(serde_json::value::to_raw_value(object)?))
    }

    /// [`Self::signed_key_response`] as JSON, for the checks that read it as such.
    pub fn server_key_response(&self) -> anyhow::Result<Value> {
        Ok(self.signed_key_response()?.deserialize_as()?)
    }
}

fn parse_key_file(text: &str) -> anyhow::Result<Ed25519KeyPair> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).context("the file is empty")?;
    let mut parts = line.split_whitespace();
    let (Some(algorithm), Some(version), Some(seed), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        bail!("expected `ed25519 <version> <base64 key>`");
    };
    if algorithm != "ed25519" {
        bail!("unsupported key algorithm `{algorithm}`");
    }
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("invalid key version `{version}`");
    }
    let seed = STANDARD_NO_PAD.decode(seed.trim_end_matches('=')).context("the key is not valid base64")?;
    if seed.len() != 32 {
        bail!("the key must be 32 bytes, found {}", seed.len());
    }
    Ok(Ed25519KeyPair::new(ED25519_OID, &seed, None, version.to_owned())?)
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_a_synapse_key_file() {
        let pair = parse_key_file("ed25519 a_abcd AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n").unwrap();
        assert_eq!(pair.version(), "a_abcd");
    }

    #[test]
    fn rejects_malformed_key_files() {
        for text in
            ["", "ed25519 a_abcd", "rsa a_abcd AAAA", "ed25519 a_abcd !!!", "ed25519 a_abcd AAAA", "ed25519 a b c d"]
        {
            assert!(parse_key_file(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn generated_keys_sign_verifiable_responses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        ServerKeys::generate_file(&path).unwrap();
        assert!(ServerKeys::generate_file(&path).is_err(), "must not overwrite");
        let keys = ServerKeys::load("example.org".try_into().unwrap(), &path).unwrap();
        let body = keys.server_key_response().unwrap();
        let object: CanonicalJsonObject = serde_json::from_value(body).unwrap();
        let mut key_set = ruma::signatures::PublicKeySet::new();
        key_set.insert(keys.key_id(), ruma::serde::Base64::parse(keys.public_key_base64()).unwrap());
        let mut map = ruma::signatures::PublicKeyMap::new();
        map.insert("example.org".into(), key_set);
        ruma::signatures::verify_json(&map, &object).unwrap();
    }
}
