//! What the benchmarks that run kith beside Synapse share: a server process's CPU time
//! and memory from `/proc`, request times from each server's own log, and percentiles.

#![allow(dead_code)] // Each benchmark uses part of it.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` (`CLK_TCK`, 100 on Linux).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// User and system CPU time of a process, in clock ticks (`/proc/<pid>/stat`).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let field = |n: usize| fields.get(n).and_then(|f| f.parse::<u64>().ok()).unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    field(11) + field(12)
}

/// A process's resident memory now (`VmRSS`) in KiB.
pub fn resident_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// The most resident memory a process has had (`VmHWM`) in KiB.
pub fn peak_resident_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_default();
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or_default()
}

/// `... kith::access: request method=POST path=/_matrix/... status=200 ms=12.3`
pub fn kith_time(line: &str, method: &str, path: &str) -> Option<Duration> {
    if !line.contains("kith::access") || !line.contains(&format!("method={method} path={path} ")) {
        return None;
    }
    let ms: f64 = line.split("ms=").nth(1)?.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_secs_f64(ms / 1e3))
}

/// `... Processed request: 0.058sec/0.001sec (...) 1234B 200 "POST /_matrix/... HTTP/1.1"`
/// (processing and sending); `path` matches the start of the logged path and query.
pub fn synapse_time(line: &str, method: &str, path: &str) -> Option<Duration> {
    if !line.contains(&format!("\"{method} {path}")) {
        return None;
    }
    let times = line.split("Processed request: ").nth(1)?.split_whitespace().next()?;
    let (processing, sending) = times.split_once('/')?;
    let seconds = |text: &str| text.trim_end_matches("sec").parse::<f64>().ok();
    Some(Duration::from_secs_f64(seconds(processing)? + seconds(sending)?))
}

/// The value at `percent` of `values` (nearest rank).
pub fn percentile(values: &[Duration], percent: usize) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    let index = (sorted.len() * percent).div_ceil(100).saturating_sub(1);
    sorted.get(index.min(sorted.len().saturating_sub(1))).copied().unwrap_or_default()
}

pub fn ms(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1e3;
    if ms < 10.0 { format!("{ms:.1} ms") } else { format!("{ms:.0} ms") }
}

pub fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64().max(1e-6)
}

pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|n| n.replace('_', "").parse().ok()).unwrap_or(default)
}

/// Runs a benchmark that needs Synapse, or says why it is skipped: kith logs at
/// Synapse's level (the tests' default is debug), access log included, unless
/// `KITH_TEST_LOG` says otherwise.
pub fn run_beside_synapse<F: Future<Output = ()>>(name: &str, synapse_venv: &Path, run: impl FnOnce() -> F) {
    if !synapse_venv.join("bin/python").exists() {
        println!("{name}: skipped, no matrix-synapse virtualenv (run `bash scripts/test` once)");
        return;
    }
    if std::env::var_os("KITH_TEST_LOG").is_none() {
        // SAFETY: no other thread runs yet.
        unsafe { std::env::set_var("KITH_TEST_LOG", "kith=info,warn") };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(run());
}
