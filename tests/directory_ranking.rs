//! The directory's ranking against Synapse's own on PostgreSQL, computed by PostgreSQL:
//! a random directory goes into kith's index and into a table built the way Synapse
//! builds `user_directory_search` (display names prepared and queries parsed by
//! Synapse's own functions, from the test virtualenv), and every top 10 of kith's must
//! be one Synapse could have given: at each position a user of the same rank there,
//! ties allowed. The names avoid where kith differs on purpose (accents, CJK, a
//! query that is a whole user ID; `docs/directory.md`).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};

use kith::services::directory::index::{DirectoryIndex, UserProfile};
use kith::services::directory::search::SearchOptions;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

const FIRST: &[(&str, &str)] = &[
    ("Mary", "mary"),
    ("Martin", "martin"),
    ("Anna", "anna"),
    ("Ann", "ann"),
    ("John", "john"),
    ("Noah", "noah"),
    ("William", "william"),
    ("Marsha", "marsha"),
    ("Иван", "ivan"),
    ("Анна", "anna"),
    ("Мария", "maria"),
    ("Ольга", "olga"),
];
const LAST: &[(&str, &str)] = &[
    ("Martin", "martin"),
    ("Williams", "williams"),
    ("Smith", "smith"),
    ("Johnson", "johnson"),
    ("Marsh", "marsh"),
    ("Петров", "petrov"),
    ("Смирнова", "smirnova"),
    ("Кузнецова", "kuznetsova"),
];
const SERVERS: &[&str] = &["kith.test", "kith.test", "kith.test", "remote.example", "mars.example"];
const QUERIES: &[&str] = &[
    "m",
    "ma",
    "mar",
    "mary",
    "Mary",
    "martin",
    "MARTIN",
    "mart",
    "marsh",
    "marsha",
    "a",
    "an",
    "ann",
    "anna",
    "jo",
    "john",
    "johnson",
    "no",
    "noah",
    "wil",
    "william",
    "williams",
    "s",
    "smith",
    "smi",
    "user",
    "user1",
    "user12",
    "mary martin",
    "martin mary",
    "anna smith",
    "ann smith",
    "john williams",
    "noah w",
    "mary_martin",
    "mary.martin",
    "noah_williams",
    "john.smith",
    "anna_smith",
    "ma ma",
    "mars",
    "example",
    "remote",
    "kith",
    "иван",
    "Иван",
    "ив",
    "анна",
    "ан",
    "мария",
    "мар",
    "петров",
    "пет",
    "смирнова",
    "иван петров",
    "анна смирнова",
    "ольга к",
    "ivan",
    "petrov",
    "olga",
    "maria",
    "1",
    "12",
    "mary-martin",
    "o'brien",
    "",
];

struct User {
    user_id: String,
    localpart: String,
    server: &'static str,
    display_name: Option<String>,
    avatar_url: Option<String>,
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.gen_range(0..items.len())]
}

fn display_name(rng: &mut StdRng, first: &str, last: &str) -> Option<String> {
    let other = pick(rng, FIRST).0;
    match rng.gen_range(0..10) {
        0 | 1 => None,
        2 => Some(first.to_owned()),
        3 => Some(format!("{first} {other} {last}")),
        4 => Some(format!("{first}-{last}")),
        5 => Some(format!("{last}, {first}")),
        _ => Some(format!("{first} {last}")),
    }
}

fn localpart(rng: &mut StdRng, first: &str, last: &str) -> String {
    let n = rng.gen_range(1..200);
    match rng.gen_range(0..8) {
        0 => first.to_owned(),
        1 => format!("{first}{n}"),
        2 => format!("{first}_{last}"),
        3 => format!("{first}.{last}"),
        4 => format!("{first}_{last}{n}"),
        5 => format!("{first}.{last}.{n}"),
        6 => format!("user{n}"),
        _ => format!("{}{last}", &first[..1]),
    }
}

fn random_users(rng: &mut StdRng, count: usize) -> Vec<User> {
    let mut taken = BTreeSet::new();
    let mut users = Vec::new();
    while users.len() < count {
        let (first, first_ascii) = pick(rng, FIRST);
        let (last, last_ascii) = pick(rng, LAST);
        let localpart = localpart(rng, first_ascii, last_ascii);
        let server = pick(rng, SERVERS);
        let user_id = format!("@{localpart}:{server}");
        if !taken.insert(user_id.clone()) {
            continue;
        }
        let display_name = display_name(rng, first, last);
        let avatar_url = rng.gen_bool(0.5).then(|| "mxc://kith.test/avatar".to_owned());
        users.push(User { user_id, localpart, server, display_name, avatar_url });
    }
    users
}

fn kith_index(users: &[User]) -> DirectoryIndex {
    let mut index = DirectoryIndex::default();
    for user in users {
        let profile = UserProfile { display_name: user.display_name.clone(), avatar_url: user.avatar_url.clone() };
        let id = index.upsert_user(&user.user_id, profile, user.server == "kith.test");
        index.set_member("!public:kith.test", id, true);
    }
    index.set_room_public("!public:kith.test", true);
    index
}

/// Synapse's preparation of the names and queries: `{"names": [...], "queries": [[full, exact, prefix]...]}`.
fn synapse_terms(users: &[User]) -> Value {
    let python = common::synapse_venv().join("bin/python");
    common::require_file(&python, "scripts/test installs Synapse into a virtualenv");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/synapse_directory_terms.py");
    let names: Vec<&str> = users.iter().filter_map(|u| u.display_name.as_deref()).collect();
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("Synapse's python runs");
    let request = json!({ "names": names, "queries": QUERIES });
    child.stdin.take().expect("stdin").write_all(request.to_string().as_bytes()).expect("write the terms");
    let output = child.wait_with_output().expect("Synapse's python ends");
    assert!(output.status.success(), "preparing the terms with Synapse's functions failed");
    serde_json::from_slice(&output.stdout).expect("JSON from Synapse's functions")
}

async fn synapse_table(users: &[User], names: &[Value]) -> PgPool {
    let database = common::postgres::FreshDatabase::create().await;
    let options = PgConnectOptions::new()
        .host(&database.socket_dir.display().to_string())
        .username(&database.user)
        .database(&database.name);
    let pool = PgPoolOptions::new().max_connections(1).connect_with(options).await.expect("connect to PostgreSQL");
    sqlx::query(
        "CREATE TABLE directory (user_id TEXT PRIMARY KEY, display_name TEXT, avatar_url TEXT, vector TSVECTOR)",
    )
    .execute(&pool)
    .await
    .expect("create the table");
    let mut names = names.iter();
    for user in users {
        let indexed_name = user.display_name.as_ref().map(|_| names.next().and_then(Value::as_str).expect("a name"));
        // Synapse weighs the localpart A, the server name D and the display name B.
        sqlx::query(
            "INSERT INTO directory VALUES ($1, $2, $3, \
             setweight(to_tsvector('simple', $4), 'A') || setweight(to_tsvector('simple', $5), 'D') \
             || setweight(to_tsvector('simple', COALESCE($6, '')), 'B'))",
        )
        .bind(&user.user_id)
        .bind(&user.display_name)
        .bind(&user.avatar_url)
        .bind(&user.localpart)
        .bind(user.server)
        .bind(indexed_name)
        .execute(&pool)
        .await
        .expect("insert a user");
    }
    pool
}

/// Every user Synapse matches, with the rank of its ORDER BY key (1 = best; equal keys
/// share a rank), best first.
async fn synapse_order(pool: &PgPool, full: &str, exact: &str, prefix: &str) -> Vec<(String, i64)> {
    sqlx::query_as(
        "WITH keyed AS ( \
           SELECT user_id, \
             4.0 * (CASE WHEN display_name IS NOT NULL THEN 1.2 ELSE 1.0 END) \
                 * (CASE WHEN avatar_url IS NOT NULL THEN 1.2 ELSE 1.0 END) \
                 * (3 * ts_rank_cd('{0.1, 0.1, 0.9, 1.0}', vector, to_tsquery('simple', $2), 8) \
                    + ts_rank_cd('{0.1, 0.1, 0.9, 1.0}', vector, to_tsquery('simple', $3), 8)) AS score, \
             display_name IS NULL AS no_name, avatar_url IS NULL AS no_avatar \
           FROM directory WHERE vector @@ to_tsquery('simple', $1)) \
         SELECT user_id, DENSE_RANK() OVER (ORDER BY score DESC, no_name, no_avatar) AS tier \
         FROM keyed ORDER BY tier, user_id",
    )
    .bind(full)
    .bind(exact)
    .bind(prefix)
    .fetch_all(pool)
    .await
    .expect("Synapse's ranking query")
}

/// Where kith's answer to `query` is not one Synapse could have given, why.
fn disagreement(query: &str, kith: &[String], synapse: &[(String, i64)]) -> Option<String> {
    let tiers: HashMap<&str, i64> = synapse.iter().map(|(user, tier)| (user.as_str(), *tier)).collect();
    let expected_len = synapse.len().min(10);
    let shown = || {
        let synapse_top: Vec<String> = synapse.iter().take(12).map(|(u, t)| format!("{u} ({t})")).collect();
        format!("kith {kith:?}; Synapse's order (rank) {synapse_top:?}, {} matches", synapse.len())
    };
    if kith.len() != expected_len {
        return Some(format!("{query:?}: {} results, Synapse {expected_len}: {}", kith.len(), shown()));
    }
    for (position, user) in kith.iter().enumerate() {
        let Some(tier) = tiers.get(user.as_str()) else {
            return Some(format!("{query:?}: {user} is no match for Synapse: {}", shown()));
        };
        if *tier != synapse[position].1 {
            return Some(format!(
                "{query:?}: at {position} {user} has rank {tier}, not {}: {}",
                synapse[position].1,
                shown()
            ));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_top_ten_is_one_synapse_on_postgresql_could_give() {
    let mut rng = StdRng::seed_from_u64(20261207);
    let users = random_users(&mut rng, 600);
    let index = kith_index(&users);
    let terms = synapse_terms(&users);
    let pool = synapse_table(&users, terms["names"].as_array().expect("names")).await;
    let options = SearchOptions {
        searcher: "@searcher:kith.test".to_owned(),
        limit: 10,
        search_all_users: true,
        ..Default::default()
    };
    let mut disagreements = Vec::new();
    for (query, parsed) in QUERIES.iter().zip(terms["queries"].as_array().expect("queries")) {
        let [full, exact, prefix] = [0, 1, 2].map(|i| parsed[i].as_str().unwrap_or_default().to_owned());
        let synapse = if full.is_empty() { Vec::new() } else { synapse_order(&pool, &full, &exact, &prefix).await };
        let kith: Vec<String> = index.search(query, &options).results.into_iter().map(|hit| hit.user_id).collect();
        disagreements.extend(disagreement(query, &kith, &synapse));
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} queries differ:\n{}",
        disagreements.len(),
        QUERIES.len(),
        disagreements.join("\n")
    );
}
