//! A throwaway PostgreSQL cluster per test process: `initdb` into a temp dir, listening
//! only on a Unix socket there, one fresh database per test server. A watchdog shell
//! stops the cluster when the test process exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

struct Cluster {
    socket_dir: PathBuf,
    user: String,
    /// The shell that runs and finally stops PostgreSQL; it outlives no test process.
    _watchdog: std::process::Child,
}

static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A new, empty database on the shared cluster.
pub struct FreshDatabase {
    pub socket_dir: PathBuf,
    pub user: String,
    pub name: String,
}

impl FreshDatabase {
    pub async fn create() -> Self {
        let cluster = CLUSTER
            .get_or_init(|| async { tokio::task::spawn_blocking(start_cluster).await.expect("start postgres") })
            .await;
        let name = format!("kith_{}_{}", std::process::id(), NEXT_DB.fetch_add(1, Ordering::SeqCst));
        let status = Command::new("psql")
            .args(["-h", &cluster.socket_dir.display().to_string(), "-U", &cluster.user, "-d", "postgres", "-qc"])
            .arg(format!("CREATE DATABASE {name}"))
            .stdout(Stdio::null())
            .status()
            .expect("psql");
        assert!(status.success(), "CREATE DATABASE {name} failed");
        Self { socket_dir: cluster.socket_dir.clone(), user: cluster.user.clone(), name }
    }
}

/// The `database:` section for a new, empty database on the shared cluster.
pub async fn fresh_database_yaml() -> String {
    let database = FreshDatabase::create().await;
    format!(
        "database:\n  name: psycopg2\n  args:\n    user: {}\n    host: {}\n    dbname: {}\n    cp_max: 5\n",
        database.user,
        database.socket_dir.display(),
        database.name
    )
}

/// A server binary: Debian installs them outside PATH, one directory per major version
/// (the newest installed one is used, 14 or later, as `scripts/test` accepts any).
fn pg_bin(name: &str) -> PathBuf {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.filter_map(|d| d.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    versions.sort_unstable_by(|a, b| b.cmp(a));
    versions
        .into_iter()
        .filter(|version| *version >= 14)
        .map(|version| Path::new("/usr/lib/postgresql").join(version.to_string()).join("bin").join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0").unwrap_or(false)
}

/// PostgreSQL refuses to run as root; then the cluster belongs to the `postgres` user.
fn as_cluster_owner(root: bool, program: PathBuf) -> Command {
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn start_cluster() -> Cluster {
    let root = running_as_root();
    let dir = tempfile::Builder::new().prefix("kith-pg").tempdir().expect("tempdir").keep();
    let data = dir.join("data");
    if root {
        let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().expect("chown");
        assert!(status.success(), "chown of the cluster dir failed");
    }
    let user = if root { "postgres".to_owned() } else { std::env::var("USER").unwrap_or_else(|_| "postgres".into()) };
    let output = as_cluster_owner(root, pg_bin("initdb"))
        .args(["--auth=trust", "--encoding=UTF8", "--locale=C", "-U", &user, "-D"])
        .arg(&data)
        .output()
        .expect("initdb (is PostgreSQL installed?)");
    assert!(output.status.success(), "initdb failed: {}", String::from_utf8_lossy(&output.stderr));
    let log = dir.join("postgres.log");
    let postgres = pg_bin("postgres");
    // The watchdog ends the cluster when this test process is gone.
    let script = format!(
        "{} -D '{}' -k '{}' -c listen_addresses='' -c fsync=off -c max_connections=200 >'{}' 2>&1 & pg=$!; \
         while [ -d /proc/{} ] && kill -0 $pg 2>/dev/null; do sleep 1; done; kill -INT $pg 2>/dev/null; \
         wait $pg; rm -rf '{}'",
        postgres.display(),
        data.display(),
        dir.display(),
        log.display(),
        std::process::id(),
        dir.display()
    );
    let mut watchdog = if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", "sh", "-c", &script]);
        command
    } else {
        let mut command = Command::new("sh");
        command.args(["-c", &script]);
        command
    };
    let watchdog =
        watchdog.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start postgres");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = Command::new(pg_bin("pg_isready"))
            .args(["-h", &dir.display().to_string(), "-U", &user])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "postgres did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Cluster { socket_dir: dir, user, _watchdog: watchdog }
}
