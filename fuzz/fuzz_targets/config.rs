//! `homeserver.yaml`: parsed and validated as at start-up, then the values start-up
//! derives from it (the database to open, the federated directory, the file paths).

#![no_main]

use kith::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = Config::parse(text) else { return };
    // Validation opened the database target once; it must open the same way again.
    assert!(config.database_target().is_ok());
    let _ = config.federated_user_directory();
    let dir = std::path::Path::new("/etc/kith");
    let _ = (config.media_store_path(dir), config.signing_key_path(dir));
});
