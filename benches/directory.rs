//! User directory benchmark: synthetic directories of 10k, 100k and 1M users, a fixed
//! query mix, the index against a linear scan, in process and over HTTP.
//!
//! Run: `cargo bench --bench directory` (options after `--`: `--sizes 10000,100000`,
//! `--no-http`, `--rounds N`, `--database DIR`: keep each size's SQLite database in DIR
//! and reuse it on the next run, since loading 1M users takes minutes). Prints figures;
//! asserts nothing about time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use kith::services::directory::index::{DirectoryIndex, UserProfile};
use kith::services::directory::search::SearchOptions;

const LOCAL_SERVER: &str = "bench.local";
const REMOTE_SERVERS: usize = 50;

const LATIN_FIRST: &[&str] = &[
    "John", "Mary", "James", "Anna", "Robert", "Linda", "Michael", "Sarah", "David", "Laura", "Joseph", "Emma",
    "Thomas", "Olivia", "Daniel", "Sophie", "Mark", "Julia", "Paul", "Alice",
];
const LATIN_LAST: &[&str] = &[
    "Smith", "Johnson", "Brown", "Taylor", "Miller", "Wilson", "Moore", "Anderson", "Jackson", "Martin", "Thompson",
    "White", "Harris", "Clark", "Lewis", "Walker", "Hall", "Young", "King", "Wright",
];
const ACCENTED_FIRST: &[&str] =
    &["José", "María", "François", "Zoë", "Jürgen", "Ángel", "Renée", "Łukasz", "Søren", "Inés"];
const ACCENTED_LAST: &[&str] =
    &["González", "Müller", "Dvořák", "Pérez", "Núñez", "Lefèvre", "Żukowski", "Ångström", "Çelik", "Hernández"];
const CYRILLIC_FIRST: &[&str] = &["Иван", "Мария", "Алексей", "Ольга", "Дмитрий", "Анна", "Сергей", "Елена"];
const CYRILLIC_LAST: &[&str] =
    &["Петров", "Иванова", "Смирнов", "Кузнецова", "Попов", "Соколова", "Лебедев", "Новикова"];
const GREEK_FIRST: &[&str] = &["Γιώργος", "Μαρία", "Νίκος", "Ελένη", "Δημήτρης", "Κατερίνα"];
const GREEK_LAST: &[&str] = &["Παπαδόπουλος", "Νικολάου", "Γεωργίου", "Οικονόμου", "Δημητρίου"];
const CJK_NAMES: &[&str] = &["陈晓明", "王伟", "李娜", "张敏", "刘洋", "杨静", "赵磊", "黄丽", "周杰", "吴芳"];

struct SynthUser {
    user_id: String,
    name: Option<String>,
    avatar: Option<String>,
    local: bool,
}

struct SynthRoom {
    room_id: String,
    public: bool,
    members: Vec<usize>,
}

struct Dataset {
    users: Vec<SynthUser>,
    rooms: Vec<SynthRoom>,
    searcher: usize,
}

fn pick<'a>(rng: &mut StdRng, list: &[&'a str]) -> &'a str {
    list[rng.gen_range(0..list.len())]
}

fn random_name(rng: &mut StdRng) -> Option<String> {
    match rng.gen_range(0..100) {
        0..10 => None,
        10..50 => Some(format!("{} {}", pick(rng, LATIN_FIRST), pick(rng, LATIN_LAST))),
        50..65 => Some(format!("{} {}", pick(rng, ACCENTED_FIRST), pick(rng, ACCENTED_LAST))),
        65..80 => Some(format!("{} {}", pick(rng, CYRILLIC_FIRST), pick(rng, CYRILLIC_LAST))),
        80..90 => Some(format!("{} {}", pick(rng, GREEK_FIRST), pick(rng, GREEK_LAST))),
        _ => Some(pick(rng, CJK_NAMES).to_owned()),
    }
}

/// ~20% remote users on 50 servers, ~10% without a name; many small private rooms and a
/// few large public ones.
fn generate(size: usize) -> Dataset {
    let mut rng = StdRng::seed_from_u64(size as u64);
    let users: Vec<SynthUser> = (0..size)
        .map(|i| {
            let local = rng.gen_range(0..100) >= 20;
            let server = if local {
                LOCAL_SERVER.to_owned()
            } else {
                format!("srv{}.example", rng.gen_range(0..REMOTE_SERVERS))
            };
            let name = random_name(&mut rng);
            let localpart = match &name {
                Some(name) if name.is_ascii() => format!("{}.{i}", name.to_lowercase().replace(' ', "_")),
                _ => format!("user{i}"),
            };
            let avatar = rng.gen_bool(0.5).then(|| format!("mxc://{server}/{i}"));
            SynthUser { user_id: format!("@{localpart}:{server}"), name, avatar, local }
        })
        .collect();
    let mut rooms = Vec::new();
    for r in 0..size / 4 {
        let count = rng.gen_range(2..=6);
        let mut members: Vec<usize> = (0..count).map(|_| rng.gen_range(0..size)).collect();
        members.sort_unstable();
        members.dedup();
        rooms.push(SynthRoom { room_id: format!("!private{r}:{LOCAL_SERVER}"), public: false, members });
    }
    let mut everyone: Vec<usize> = (0..size).collect();
    for r in 0..20 {
        everyone.shuffle(&mut rng);
        let count = (size / 10 / (r + 1)).max(10).min(size);
        rooms.push(SynthRoom {
            room_id: format!("!public{r}:{LOCAL_SERVER}"),
            public: true,
            members: everyone[..count].to_vec(),
        });
    }
    let searcher = (0..size).find(|i| users[*i].local).unwrap_or(0);
    Dataset { users, rooms, searcher }
}

/// Builds the index the way the server does from its tables.
fn build(dataset: &Dataset) -> DirectoryIndex {
    let mut index = DirectoryIndex::default();
    index.begin_bulk(dataset.users.len());
    let mut ids = vec![None; dataset.users.len()];
    for (i, user) in dataset.users.iter().enumerate().filter(|(_, u)| u.local) {
        let profile = UserProfile { display_name: user.name.clone(), avatar_url: user.avatar.clone() };
        ids[i] = Some(index.upsert_user(&user.user_id, profile, true));
    }
    for room in &dataset.rooms {
        index.set_room_public(&room.room_id, room.public);
        for &member in &room.members {
            let user = &dataset.users[member];
            let id = match ids[member] {
                Some(id) if user.local || !room.public => id,
                _ => {
                    let profile = if room.public {
                        UserProfile { display_name: user.name.clone(), avatar_url: user.avatar.clone() }
                    } else {
                        UserProfile::default()
                    };
                    let id = index.upsert_user(&user.user_id, profile, user.local);
                    ids[member] = Some(id);
                    id
                }
            };
            index.set_member(&room.room_id, id, true);
        }
    }
    index.finish_bulk();
    index
}

fn query_mix(dataset: &Dataset) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(7);
    let named: Vec<&SynthUser> = dataset.users.iter().filter(|u| u.name.is_some()).collect();
    let mut queries = Vec::new();
    for _ in 0..4 {
        queries.push(named[rng.gen_range(0..named.len())].name.clone().unwrap_or_default());
    }
    queries.extend(["jo", "mar", "ив", "an", "ma"].map(str::to_owned));
    for _ in 0..3 {
        let user = &dataset.users[rng.gen_range(0..dataset.users.len())];
        queries.push(user.user_id.trim_start_matches('@').split(':').next().unwrap_or_default().to_owned());
        queries.push(dataset.users[rng.gen_range(0..dataset.users.len())].user_id.clone());
    }
    queries.extend(["Иван", "Петров", "陈晓明", "王", "Γιώργος", "gonzalez", "zzqxjv", "a"].map(str::to_owned));
    queries
}

struct Stats {
    samples: Vec<Duration>,
}

impl Stats {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort();
        sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
    }
    fn total(&self) -> Duration {
        self.samples.iter().sum()
    }
    fn line(&self, label: &str, wall: Duration) -> String {
        format!(
            "{label:<28} p50 {:>9.3} ms  p90 {:>9.3} ms  p99 {:>9.3} ms  {:>9.0} queries/s",
            ms(self.percentile(0.5)),
            ms(self.percentile(0.9)),
            ms(self.percentile(0.99)),
            self.samples.len() as f64 / wall.as_secs_f64()
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn resident_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn run_in_process(
    index: &DirectoryIndex,
    queries: &[String],
    options: &SearchOptions,
    rounds: usize,
    linear: bool,
) -> (Stats, Duration) {
    let mut samples = Vec::new();
    let started = Instant::now();
    for _ in 0..rounds {
        for query in queries {
            let t = Instant::now();
            let results = if linear { index.linear_scan(query, options) } else { index.search(query, options) };
            samples.push(t.elapsed());
            std::hint::black_box(results);
        }
    }
    (Stats { samples }, started.elapsed())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let sizes: Vec<usize> = value("--sizes")
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000]);
    let rounds: usize = value("--rounds").and_then(|r| r.parse().ok()).unwrap_or(20);
    let http = !args.iter().any(|a| a == "--no-http");
    let kept_databases = value("--database").map(PathBuf::from);
    for size in sizes {
        bench_size(size, rounds, http, kept_databases.as_deref());
    }
}

fn bench_size(size: usize, rounds: usize, http: bool, kept_databases: Option<&Path>) {
    println!("\n== {size} users ==");
    let dataset = generate(size);
    let queries = query_mix(&dataset);
    let rss_before = resident_kib("self");
    let started = Instant::now();
    let index = build(&dataset);
    let build_time = started.elapsed();
    let rss_index = resident_kib("self").saturating_sub(rss_before);
    let memberships: usize = dataset.rooms.iter().map(|r| r.members.len()).sum();
    println!(
        "index build {:.2} s ({} listed users, {} rooms, {} memberships), resident memory for the index {} MiB ({:.0} bytes/user)",
        build_time.as_secs_f64(),
        index.user_count(),
        dataset.rooms.len(),
        memberships,
        rss_index / 1024,
        rss_index as f64 * 1024.0 / size as f64
    );
    let options =
        SearchOptions { searcher: dataset.users[dataset.searcher].user_id.clone(), limit: 10, ..Default::default() };
    let (indexed, wall) = run_in_process(&index, &queries, &options, rounds, false);
    println!("{}", indexed.line("in-process, index", wall));
    let linear_rounds = (rounds * 10_000 / size).clamp(1, rounds);
    let (linear, wall) = run_in_process(&index, &queries, &options, linear_rounds, true);
    println!("{}", linear.line("in-process, linear scan", wall));
    let ratio = (linear.total().as_secs_f64() / linear.samples.len() as f64)
        / (indexed.total().as_secs_f64() / indexed.samples.len() as f64);
    println!(
        "index vs linear scan: {ratio:.0}x faster on average, p99 {:.0}x",
        ms(linear.percentile(0.99)) / ms(indexed.percentile(0.99))
    );
    for (query, slowest) in slowest_queries(&index, &queries, &options) {
        println!("  slowest: {query:?} {:.3} ms", ms(slowest));
    }
    drop(index);
    if http {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(bench_http(&dataset, &queries, rounds, kept_databases));
    }
}

fn slowest_queries(index: &DirectoryIndex, queries: &[String], options: &SearchOptions) -> Vec<(String, Duration)> {
    let mut times: Vec<(String, Duration)> = queries
        .iter()
        .map(|q| {
            let t = Instant::now();
            std::hint::black_box(index.search(q, options));
            (q.clone(), t.elapsed())
        })
        .collect();
    times.sort_by_key(|(_, time)| std::cmp::Reverse(*time));
    times.truncate(3);
    times
}

fn fixture(user: &SynthUser) -> kith::store::FixtureUser<'_> {
    kith::store::FixtureUser {
        user_id: &user.user_id,
        display_name: user.name.as_deref(),
        avatar_url: user.avatar.as_deref(),
    }
}

/// Loads the dataset into a SQLite database, starts the real server on it, and searches
/// over HTTP on loopback with one and two concurrent clients.
async fn bench_http(dataset: &Dataset, queries: &[String], rounds: usize, kept_databases: Option<&Path>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_path = match kept_databases {
        Some(kept) => {
            std::fs::create_dir_all(kept).expect("database folder");
            kept.join(format!("directory-{}.db", dataset.users.len()))
        }
        None => dir.path().join("bench.db"),
    };
    // The dataset is generated from a fixed seed, so a kept database holds the same users.
    if !db_path.exists() {
        load_database(dataset, &db_path).await;
    }
    run_server_and_search(queries, rounds, dir.path(), &db_path).await;
}

const TOKEN: &str = "bench_token";

async fn load_database(dataset: &Dataset, db_path: &Path) {
    let target = kith::config::DatabaseTarget::Sqlite { path: db_path.display().to_string() };
    let store = kith::store::Store::connect(&target).await.expect("database");
    let load_started = Instant::now();
    let locals: Vec<_> = dataset.users.iter().filter(|u| u.local).map(fixture).collect();
    store.bulk_insert_local_users(&locals).await.expect("users");
    let mut ordering = 1;
    for room in &dataset.rooms {
        let members: Vec<_> = room.members.iter().map(|m| fixture(&dataset.users[*m])).collect();
        store.bulk_insert_room(&room.room_id, room.public, &members, ordering).await.expect("room");
        ordering += members.len() as i64 + 1;
    }
    let searcher = &dataset.users[dataset.searcher].user_id;
    let hash = kith::services::accounts::hash_token(TOKEN);
    store.add_session(searcher, "BENCH", None, &hash).await.expect("session");
    store.close().await;
    println!("database loaded in {:.1} s", load_started.elapsed().as_secs_f64());
}

async fn run_server_and_search(queries: &[String], rounds: usize, dir: &Path, db_path: &Path) {
    let token = TOKEN;
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let config = format!(
        "server_name: {LOCAL_SERVER}\nlisteners:\n  - port: {port}\n    bind_addresses: ['127.0.0.1']\n    resources: [{{names: [client]}}]\n\
         database:\n  name: sqlite3\n  args:\n    database: {}\nrc_user_directory: {{per_second: 1000000, burst_count: 1000000}}\n\
         trusted_key_servers: []\nlog_level: 'warn,kith::services::directory=info'\n",
        db_path.display()
    );
    let config_path = dir.join("homeserver.yaml");
    std::fs::write(&config_path, config).expect("config");
    let log_path = dir.join("kith.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["--generate-missing", "--config"])
        .arg(&config_path)
        .stderr(log)
        .spawn()
        .expect("start kith");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let deadline = Instant::now() + Duration::from_secs(600);
    while client.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health = started.elapsed();
    let whoami = client.get(format!("{base}/_matrix/client/v3/account/whoami")).bearer_auth(token).send().await;
    assert!(whoami.is_ok_and(|r| r.status().is_success()), "whoami");
    let sync = client.get(format!("{base}/_matrix/client/v3/sync")).bearer_auth(token).send().await;
    assert!(sync.is_ok_and(|r| r.status().is_success()), "first sync");
    let first_sync = started.elapsed();
    while !std::fs::read_to_string(&log_path).unwrap_or_default().contains("user directory built") {
        assert!(Instant::now() < deadline, "the directory was not built");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "start-up: /health after {:.1} s, whoami and a first /sync answered {:.1} s after start, \
         directory built in the background {:.1} s after start; server resident memory {} MiB",
        health.as_secs_f64(),
        first_sync.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        resident_kib(&child.id().to_string()) / 1024
    );
    for clients in [1, 2] {
        let wall_started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (client, base, queries) = (client.clone(), base.clone(), queries.to_vec());
            tasks.push(tokio::spawn(async move {
                let mut samples = Vec::new();
                for _ in 0..rounds {
                    for query in &queries {
                        let t = Instant::now();
                        let response = client
                            .post(format!("{base}/_matrix/client/v3/user_directory/search"))
                            .bearer_auth(token)
                            .json(&json!({ "search_term": query, "limit": 10 }))
                            .send()
                            .await
                            .expect("search");
                        assert!(response.status().is_success(), "{}", response.status());
                        response.bytes().await.expect("body");
                        samples.push(t.elapsed());
                    }
                }
                samples
            }));
        }
        let mut samples = Vec::new();
        for task in tasks {
            samples.extend(task.await.expect("client"));
        }
        println!("{}", Stats { samples }.line(&format!("HTTP, {clients} client(s)"), wall_started.elapsed()));
    }
    let _ = child.kill();
    let _ = child.wait();
}
