//! `kith generate-config` and `--generate-missing`: a commented config with fresh secrets
//! and a fresh signing key, ready to run on SQLite.

use std::path::Path;

use anyhow::{Context, bail};
use rand::Rng;
use rand::distributions::Alphanumeric;
use ruma::ServerName;

use crate::config::Config;
use crate::services::server_keys::ServerKeys;

/// Writes `output` and the signing key it names; refuses to overwrite either.
pub fn write_config(server_name: &str, output: &Path) -> anyhow::Result<()> {
    <&ServerName>::try_from(server_name)
        .with_context(|| format!("--server-name: `{server_name}` is not a valid server name"))?;
    if output.exists() {
        bail!("{} already exists; not overwriting it", output.display());
    }
    let dir = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let key_path = dir.join(format!("{server_name}.signing.key"));
    let db_path = dir.join("homeserver.db");
    let secret: String = rand::thread_rng().sample_iter(&Alphanumeric).take(48).map(char::from).collect();
    let text = TEMPLATE
        .replace("{server_name}", server_name)
        .replace("{signing_key_path}", &key_path.display().to_string())
        .replace("{database_path}", &db_path.display().to_string())
        .replace("{media_store_path}", &dir.join("media_store").display().to_string())
        .replace("{registration_shared_secret}", &secret);
    std::fs::write(output, text).with_context(|| format!("cannot write {}", output.display()))?;
    if !key_path.exists() {
        ServerKeys::generate_file(&key_path)?;
    }
    Ok(())
}

/// For first runs: writes the config if absent, and the signing key it names if absent;
/// returns the config (read once, so its warnings are logged once).
pub fn generate_missing(server_name: &str, config_path: &Path) -> anyhow::Result<Config> {
    if !config_path.exists() {
        write_config(server_name, config_path)?;
        tracing::info!(path = %config_path.display(), "generated a new config");
    }
    let config = Config::load(config_path)?;
    let dir = config_path.parent().unwrap_or(Path::new("."));
    let key_path = config.signing_key_path(dir);
    if !key_path.exists() {
        ServerKeys::generate_file(&key_path)?;
        tracing::info!(path = %key_path.display(), "generated a new signing key");
    }
    Ok(config)
}

const TEMPLATE: &str = r#"# Kith configuration. Keys and meanings follow Synapse's homeserver.yaml;
# homeserver.example.yaml in the kith repository documents every supported key.

# The domain in your users' IDs (@alice:{server_name}). Cannot change later.
server_name: "{server_name}"

# One HTTP listener for clients and federation. Put a TLS reverse proxy in front,
# or set `tls: true` with tls_certificate_path / tls_private_key_path.
listeners:
  - port: 8008
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client, federation]

# SQLite by default; see homeserver.example.yaml for PostgreSQL.
database:
  name: sqlite3
  args:
    database: "{database_path}"

# Uploaded files and media cached from other servers.
media_store_path: "{media_store_path}"
max_upload_size: 50M

# The server's ed25519 signing key (Synapse's key file format).
signing_key_path: "{signing_key_path}"

# Lets `register_new_matrix_user` create accounts. Keep it secret.
registration_shared_secret: "{registration_shared_secret}"

# Open registration is off; turn both on to let anyone register.
enable_registration: false
enable_registration_without_verification: false

user_directory:
  enabled: true
  search_all_users: false
  prefer_local_users: false

default_room_version: "10"

log_level: info
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_config_loads_and_has_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("homeserver.yaml");
        write_config("example.org", &path).unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.server_name.as_str(), "example.org");
        assert!(config.registration_shared_secret.as_ref().is_some_and(|s| s.len() == 48));
        let key_path = config.signing_key_path(dir.path());
        ServerKeys::load(config.server_name.clone(), &key_path).unwrap();
        assert!(write_config("example.org", &path).is_err(), "must not overwrite");
    }

    #[test]
    fn the_example_config_documents_valid_keys() {
        Config::parse(include_str!("../homeserver.example.yaml")).unwrap();
    }
}
