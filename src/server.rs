//! Start-up and listeners: plain HTTP or TLS (rustls) per listener, graceful shutdown on
//! SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;

use crate::api::{self, Resources};
use crate::config::{Config, Listener};
use crate::services::Services;
use crate::services::server_keys::ServerKeys;
use crate::services::workers::Workers;
use crate::store::Store;

/// Requests in flight get this long to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Background workers get this long to stop after the listeners have.
const WORKERS_GRACE: Duration = Duration::from_secs(5);

/// Opens the database, loads the signing key and builds the services.
pub async fn build_services(mut config: Config, config_dir: &Path) -> anyhow::Result<(Arc<Services>, Arc<Store>)> {
    config.media_store_path = Some(config.media_store_path(config_dir));
    let keys = ServerKeys::load(config.server_name.clone(), &config.signing_key_path(config_dir))?;
    let store = Arc::new(Store::connect(&config.database_target()?).await?);
    Ok((Arc::new(Services::new(config, store.clone(), keys).await?), store))
}

pub async fn run(config: Config, config_dir: &Path) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (services, store) = build_services(config.clone(), config_dir).await?;
    let handle: Handle<SocketAddr> = Handle::new();
    let mut servers = tokio::task::JoinSet::new();
    for listener in &config.listeners {
        let resources =
            Resources::from_names(listener.resources.iter().flat_map(|r| r.names.iter().map(String::as_str)));
        let app = match listener.kind.as_str() {
            "metrics" if !config.enable_metrics => continue,
            "metrics" => api::metrics::router(services.clone()),
            _ => api::router(services.clone(), resources, listener.x_forwarded),
        };
        let tls = if listener.tls { Some(load_tls(&config).await?) } else { None };
        for (address, socket) in bind_listener(listener)? {
            tracing::info!(%address, tls = listener.tls, ?resources, "listening");
            let service = app.clone().into_make_service_with_connect_info::<SocketAddr>();
            match &tls {
                Some(tls) => {
                    let server = axum_server::from_tcp_rustls(socket, tls.clone())?.handle(handle.clone());
                    servers.spawn(async move { server.serve(service).await });
                }
                None => {
                    let server = axum_server::from_tcp(socket)?.handle(handle.clone());
                    servers.spawn(async move { server.serve(service).await });
                }
            }
        }
    }
    if servers.is_empty() {
        tracing::warn!("no listeners configured: nothing to serve");
    }
    // Only once the listeners are bound: a server contacted now may fetch our keys.
    let metrics = services.metrics.clone();
    let workers = Workers::start(services.workers(), Arc::new(move |worker| metrics.count_worker_restart(worker)));
    tokio::spawn(shutdown_on_signal(handle, services.clone()));
    let mut listener_error = None;
    while let Some(result) = servers.join_next().await {
        if let Err(err) = result.context("listener task failed").and_then(|r| r.context("listener failed")) {
            listener_error = Some(err);
            break;
        }
    }
    tracing::info!("stopping background work");
    workers.stop(WORKERS_GRACE).await;
    if let Some(err) = listener_error {
        return Err(err);
    }
    // Requests still in flight may hold connections; do not wait for them forever.
    if tokio::time::timeout(SHUTDOWN_GRACE, store.close()).await.is_err() {
        tracing::warn!("database connections still busy at shutdown; closing anyway");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Binds every address of a listener. Binding both `::` and `0.0.0.0` on one port fails
/// on dual-stack hosts; as in Synapse that is logged, not fatal, if another bind worked.
fn bind_listener(listener: &Listener) -> anyhow::Result<Vec<(SocketAddr, std::net::TcpListener)>> {
    let mut bound = Vec::new();
    let mut last_error = None;
    for ip in &listener.bind_addresses {
        let address = SocketAddr::new(*ip, listener.port);
        match bind(address) {
            Ok(socket) => bound.push((socket.local_addr().unwrap_or(address), socket)),
            Err(err) => {
                tracing::warn!(%address, %err, "could not bind");
                last_error = Some(err);
            }
        }
    }
    if bound.is_empty() {
        let err = last_error.map(|e| e.to_string()).unwrap_or_else(|| "no bind_addresses".into());
        anyhow::bail!("listeners: cannot bind port {}: {err}", listener.port);
    }
    Ok(bound)
}

fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = std::net::TcpListener::bind(address)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

async fn load_tls(config: &Config) -> anyhow::Result<RustlsConfig> {
    let (Some(cert), Some(key)) = (&config.tls_certificate_path, &config.tls_private_key_path) else {
        anyhow::bail!("tls_certificate_path and tls_private_key_path are required for a TLS listener");
    };
    RustlsConfig::from_pem_file(cert, key).await.with_context(|| {
        format!("tls_certificate_path/tls_private_key_path: cannot load {} / {}", cert.display(), key.display())
    })
}

async fn shutdown_on_signal(handle: Handle<SocketAddr>, services: Arc<Services>) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
    // Long-polling syncs answer now rather than hold the shutdown for their whole grace.
    services.sync.stop_waiting();
    handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
}
