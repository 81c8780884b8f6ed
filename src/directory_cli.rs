//! `kith directory rebuild`: builds the index from the database with a progress bar,
//! reports its size, and asks a running server to rebuild its own.

use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::services::appservices::registration;
use crate::services::directory::{BuildProgress, Unlisted, build_index, request_rebuild_in_database};
use crate::store::Store;

struct Bar(ProgressBar);

impl BuildProgress for Bar {
    fn phase(&self, name: &str, total: u64) {
        self.0.set_message(name.to_owned());
        self.0.set_length(total);
        self.0.set_position(0);
    }
    fn advance(&self, done: u64) {
        self.0.set_position(done);
    }
}

pub async fn rebuild(config: Config) -> anyhow::Result<()> {
    let store = Store::connect(&config.database_target()?).await?;
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template("{msg:>18} [{bar:40}] {pos}/{len} ({elapsed})")?.progress_chars("=> ");
    bar.set_style(style);
    let started = Instant::now();
    let services = registration::load_all(&config.app_service_config_files, &config.server_name)?;
    let unlisted = Unlisted::new(&config.user_directory, &services.into_iter().map(Arc::new).collect::<Vec<_>>());
    let index = build_index(&store, config.server_name.as_str(), &unlisted, &Bar(bar.clone())).await?;
    bar.finish_and_clear();
    let terms = index.lexicon.count();
    println!(
        "user directory: {} users, {} tracked rooms, {} lexemes, built in {:.2} s",
        index.user_count(),
        index.tracked_room_count(),
        terms,
        started.elapsed().as_secs_f64()
    );
    request_rebuild_in_database(&store).await?;
    println!("a running server will rebuild its index within a few seconds");
    store.close().await;
    Ok(())
}
