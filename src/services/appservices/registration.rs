//! Registration files (`app_service_config_files`, Synapse's YAML format), read into
//! ruma's `Registration` and checked at start-up: a file that does not parse, a
//! namespace regex that does not compile, a bad sender or URL, or two services sharing
//! an `id` or an `as_token` stop start-up with the file and the key named.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use regex::Regex;
use ruma::api::appservice::{Namespace, Registration};
use ruma::{OwnedUserId, ServerName, UserId};
use serde::Deserialize;

/// One registered application service, its namespaces compiled.
#[derive(Debug)]
pub struct AppService {
    pub registration: Registration,
    /// `@sender_localpart:server`, the user the `as_token` acts as.
    pub sender: OwnedUserId,
    /// Typing, receipts and presence pushed too (`receive_ephemeral`, or MSC2409's
    /// earlier `de.sorunome.msc2409.push_ephemeral`).
    pub receive_ephemeral: bool,
    users: Vec<CompiledNamespace>,
    aliases: Vec<CompiledNamespace>,
    rooms: Vec<CompiledNamespace>,
}

#[derive(Debug)]
struct CompiledNamespace {
    exclusive: bool,
    /// Anchored at the start only, as Python's `re.match` (Synapse) is.
    regex: Regex,
}

/// What Synapse reads besides ruma's fields.
#[derive(Deserialize)]
struct Extensions {
    #[serde(default, rename = "de.sorunome.msc2409.push_ephemeral")]
    push_ephemeral: bool,
}

impl AppService {
    pub fn id(&self) -> &str {
        &self.registration.id
    }

    /// Whether the service's requests pass rate limits (Synapse's default: they do not).
    pub fn rate_limited(&self) -> bool {
        self.registration.rate_limited.unwrap_or(true)
    }

    /// The sender or a user of its namespaces (exclusive or not).
    pub fn is_interested_in_user(&self, user_id: &UserId) -> bool {
        user_id == self.sender || matches(&self.users, user_id.as_str(), false)
    }

    pub fn is_exclusive_user(&self, user_id: &UserId) -> bool {
        user_id == self.sender || matches(&self.users, user_id.as_str(), true)
    }

    pub fn is_interested_in_alias(&self, alias: &str) -> bool {
        matches(&self.aliases, alias, false)
    }

    pub fn is_exclusive_alias(&self, alias: &str) -> bool {
        matches(&self.aliases, alias, true)
    }

    pub fn is_interested_in_room(&self, room_id: &str) -> bool {
        matches(&self.rooms, room_id, false)
    }

    pub fn has_protocol(&self, protocol: &str) -> bool {
        self.registration.protocols.iter().flatten().any(|p| p == protocol)
    }
}

fn matches(namespaces: &[CompiledNamespace], text: &str, exclusive_only: bool) -> bool {
    namespaces.iter().any(|ns| (ns.exclusive || !exclusive_only) && ns.regex.is_match(text))
}

/// Reads every file; any error names the file (and the key when it is a key's fault).
pub fn load_all(files: &[PathBuf], server_name: &ServerName) -> anyhow::Result<Vec<AppService>> {
    let mut by_id: HashMap<String, &Path> = HashMap::new();
    let mut by_token: HashMap<String, &Path> = HashMap::new();
    let mut services = Vec::with_capacity(files.len());
    for file in files {
        let service = load(file, server_name)
            .with_context(|| format!("app_service_config_files: invalid registration file {}", file.display()))?;
        if let Some(other) = by_id.insert(service.id().to_owned(), file) {
            bail!(
                "app_service_config_files: id `{}` is used by both {} and {}",
                service.id(),
                other.display(),
                file.display()
            );
        }
        if let Some(other) = by_token.insert(service.registration.as_token.clone(), file) {
            bail!("app_service_config_files: as_token is used by both {} and {}", other.display(), file.display());
        }
        tracing::info!(id = service.id(), file = %file.display(), "loaded application service");
        services.push(service);
    }
    Ok(services)
}

fn load(file: &Path, server_name: &ServerName) -> anyhow::Result<AppService> {
    let text = std::fs::read_to_string(file).context("cannot read the file")?;
    let registration: Registration = from_yaml(&text)?;
    let extensions: Extensions = from_yaml(&text)?;
    compile(registration, extensions, server_name)
}

fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let key = err.path().to_string();
        let inner = err.into_inner();
        if key == "." { anyhow::anyhow!("{inner}") } else { anyhow::anyhow!("{key}: {inner}") }
    })
}

fn compile(registration: Registration, extensions: Extensions, server_name: &ServerName) -> anyhow::Result<AppService> {
    if registration.id.is_empty() {
        bail!("id: must not be empty");
    }
    if registration.as_token.is_empty() || registration.hs_token.is_empty() {
        bail!("as_token, hs_token: must not be empty");
    }
    let sender = UserId::parse(format!("@{}:{server_name}", registration.sender_localpart))
        .ok()
        .filter(|_| crate::services::accounts::validate_localpart(&registration.sender_localpart).is_ok())
        .with_context(|| format!("sender_localpart: `{}` is not a valid localpart", registration.sender_localpart))?;
    if let Some(url) = &registration.url {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("url: `{url}` is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("url: `{url}` must be http or https");
        }
    }
    let namespaces = &registration.namespaces;
    let users = compile_namespaces("namespaces.users", &namespaces.users)?;
    let aliases = compile_namespaces("namespaces.aliases", &namespaces.aliases)?;
    let rooms = compile_namespaces("namespaces.rooms", &namespaces.rooms)?;
    let receive_ephemeral = registration.receive_ephemeral || extensions.push_ephemeral;
    Ok(AppService { registration, sender, receive_ephemeral, users, aliases, rooms })
}

fn compile_namespaces(key: &str, namespaces: &[Namespace]) -> anyhow::Result<Vec<CompiledNamespace>> {
    namespaces
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let regex = Regex::new(&format!("^(?:{})", ns.regex))
                .with_context(|| format!("{key}[{i}].regex: `{}` is not a valid regex", ns.regex))?;
            Ok(CompiledNamespace { exclusive: ns.exclusive, regex })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> anyhow::Result<AppService> {
        let server: &ServerName = "example.org".try_into().unwrap();
        let registration: Registration = from_yaml(yaml)?;
        compile(registration, from_yaml(yaml)?, server)
    }

    const BRIDGE: &str = "id: bridge\nurl: http://127.0.0.1:9\nas_token: a\nhs_token: h\nsender_localpart: bot\n\
        namespaces:\n  users:\n    - exclusive: true\n      regex: '@_br_.*:example.org'\n  aliases:\n    - exclusive: false\n      regex: '#_br_.*'\n";

    #[test]
    fn synapse_format_parses_and_matches_like_re_match() {
        let service = parse(BRIDGE).unwrap();
        assert_eq!(service.sender, "@bot:example.org");
        assert!(service.is_exclusive_user(UserId::parse("@_br_alice:example.org").unwrap().as_ref()));
        assert!(!service.is_interested_in_user(UserId::parse("@alice:example.org").unwrap().as_ref()));
        assert!(service.is_interested_in_alias("#_br_x:example.org"));
        assert!(!service.is_exclusive_alias("#_br_x:example.org"));
        assert!(service.rate_limited());
    }

    #[test]
    fn errors_name_the_key() {
        let missing_url = BRIDGE.replace("url: http://127.0.0.1:9\n", "");
        assert!(parse(&missing_url).unwrap_err().to_string().contains("url"));
        let null_url = BRIDGE.replace("http://127.0.0.1:9", "null");
        assert!(parse(&null_url).unwrap().registration.url.is_none());
        let bad_regex = BRIDGE.replace("'@_br_.*:example.org'", "'@_br_(:example.org'");
        let err = format!("{:#}", parse(&bad_regex).unwrap_err());
        assert!(err.contains("namespaces.users[0].regex"), "{err}");
        let bad_type = BRIDGE.replace("exclusive: true", "exclusive: yes please");
        let err = format!("{:#}", parse(&bad_type).unwrap_err());
        assert!(err.contains("namespaces.users[0].exclusive"), "{err}");
    }
}
