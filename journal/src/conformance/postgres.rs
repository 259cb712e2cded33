//! A PostgreSQL for tests: the server named by `REWIND_TEST_POSTGRES_URL` (what `.ci/run`
//! starts once for the whole suite), or else a throwaway one this process starts on a free
//! loopback port and stops when the last user drops it. Each fixture gets a database of
//! its own, so tests never see each other's journals.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::Fixture;
use crate::engine::Engine;
use crate::postgres::{PostgresEngine, PostgresOptions};

/// The variable naming a running server (`postgres://user@127.0.0.1:port/postgres`, trust
/// authentication) that tests may create databases on.
pub const SERVER_ENV: &str = "REWIND_TEST_POSTGRES_URL";

/// The Debian account a root process runs the server as (PostgreSQL refuses root).
const SERVER_USER: &str = "postgres";

/// A PostgreSQL server this process started: stopped, and its files removed, on drop.
pub struct PostgresServer {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    /// `postgres://rewind@127.0.0.1:<port>`, without a database.
    base: String,
    /// Settings beyond the defaults (`-c name=value`).
    settings: Vec<String>,
}

/// A command that runs `program` as the server's account.
fn as_server(program: PathBuf) -> Command {
    if rustix::process::geteuid().is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", SERVER_USER, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl PostgresServer {
    /// Starts a server in a new temporary directory (as the `postgres` account when this
    /// process is root), on a free loopback port, and waits until it accepts connections.
    pub fn start() -> std::io::Result<Self> {
        Self::start_as(None)
    }

    /// [`PostgresServer::start`], with password authentication: user `rewind` has
    /// `password`, and connections without it are refused.
    pub fn start_with_password(password: &str) -> std::io::Result<Self> {
        Self::start_as(Some(password))
    }

    /// [`PostgresServer::start`], also accepting TLS, with a certificate for 127.0.0.1
    /// from a CA of its own; returns the server and the CA's certificate file (PEM).
    pub fn start_with_tls() -> std::io::Result<(Self, PathBuf)> {
        let mut server = Self::start_as(None)?;
        let dir = server.dir.path().to_path_buf();
        let at = |name: &str| dir.join(name).display().to_string();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        run(Command::new("openssl")
            .args(["req", "-x509"])
            .args(ec)
            .args(["-days", "2", "-subj", "/CN=rewind test CA"])
            .args(["-keyout", &at("ca.key"), "-out", &at("ca.pem")]))?;
        run(Command::new("openssl").arg("req").args(ec).args(["-subj", "/CN=127.0.0.1"]).args([
            "-keyout",
            &at("server.key"),
            "-out",
            &at("server.csr"),
        ]))?;
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")?;
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-in", &at("server.csr")])
            .args(["-CA", &at("ca.pem"), "-CAkey", &at("ca.key"), "-CAcreateserial", "-extfile", &at("san.ext")])
            .args(["-out", &at("server.pem")]))?;
        // The server refuses a key others may read.
        std::fs::set_permissions(dir.join("server.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        if rustix::process::geteuid().is_root() {
            run(Command::new("chown")
                .arg(format!("{SERVER_USER}:"))
                .arg(dir.join("server.key"))
                .arg(dir.join("server.pem")))?;
        }
        server.settings = vec![
            "ssl=on".into(),
            format!("ssl_cert_file={}", at("server.pem")),
            format!("ssl_key_file={}", at("server.key")),
        ];
        server.stop();
        server.restart()?;
        Ok((server, dir.join("ca.pem")))
    }

    fn start_as(password: Option<&str>) -> std::io::Result<Self> {
        let bin = server_bin_dir()?;
        let dir = tempfile::Builder::new().prefix("rewind-pg").tempdir()?;
        if rustix::process::geteuid().is_root() {
            run(Command::new("chown").arg(format!("{SERVER_USER}:")).arg(dir.path()))?;
        }
        let mut initdb = as_server(bin.join("initdb"));
        initdb.args(["--no-sync", "--username=rewind", "--encoding=UTF8", "--no-instructions"]);
        let pwfile = dir.path().join("pwfile");
        match password {
            Some(p) => {
                std::fs::write(&pwfile, p)?;
                initdb.arg("--auth=scram-sha-256").arg(format!("--pwfile={}", pwfile.display()));
            }
            None => {
                initdb.arg("--auth=trust");
            }
        }
        let made = run(initdb.arg("-D").arg(dir.path().join("data")));
        let _ = std::fs::remove_file(&pwfile);
        made?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Self::spawn(dir.path(), port, &[])?;
        let server =
            Self { child, dir, port, base: format!("postgres://rewind@127.0.0.1:{port}"), settings: Vec::new() };
        server.wait_ready()?;
        Ok(server)
    }

    fn spawn(dir: &Path, port: u16, settings: &[String]) -> std::io::Result<Child> {
        as_server(server_bin_dir()?.join("postgres"))
            .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "max_connections=300", "-k"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(dir.join("server.log"))?)
            .spawn()
    }

    /// Stops the server (a fast shutdown: every connection ends) and keeps its files.
    pub fn stop(&mut self) {
        self.shut_down();
    }

    /// Starts the stopped server again, on the same port, with the same databases.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.child = Self::spawn(self.dir.path(), self.port, &self.settings)?;
        self.wait_ready()
    }

    fn wait_ready(&self) -> std::io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let pid = self.dir.path().join("data/postmaster.pid");
        loop {
            // The server writes "ready" into its pid file once it accepts connections.
            if std::fs::read_to_string(&pid).is_ok_and(|t| t.lines().nth(7).is_some_and(|l| l.trim() == "ready")) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(std::io::Error::other(format!(
                    "PostgreSQL did not become ready within 30 s; its log ends:\n{}",
                    tail.join("\n")
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL of the server's `postgres` database.
    pub fn url(&self) -> String {
        format!("{}/postgres", self.base)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl PostgresServer {
    fn shut_down(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return; // stopped already
        }
        // SIGINT is PostgreSQL's fast shutdown: it ends every connection and exits. The
        // postmaster's pid is the first line of its pid file (the child may be `runuser`).
        let pid_file = self.dir.path().join("data/postmaster.pid");
        let postmaster = std::fs::read_to_string(pid_file).ok().and_then(|t| t.lines().next()?.trim().parse().ok());
        let pid = postmaster.or_else(|| i32::try_from(self.child.id()).ok()).and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) -> std::io::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// Where `initdb` and `postgres` are: `pg_config --bindir`, else Debian's newest version.
fn server_bin_dir() -> std::io::Result<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("postgres").exists() {
            return Ok(dir);
        }
    }
    let debian = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(debian)
        .map(|d| {
            d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|p| p.join("postgres").exists()).collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().ok_or_else(|| {
        std::io::Error::other("no PostgreSQL server found: install Debian's postgresql package (see .ci/run)")
    })
}

/// The server this process's tests share: the one in [`SERVER_ENV`], or one started here
/// on first use and stopped when the last fixture using it is gone.
pub fn test_server() -> Arc<TestServer> {
    static SHARED: Mutex<Weak<TestServer>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().expect("invariant: no panics under this lock");
    if let Some(s) = shared.upgrade() {
        return s;
    }
    let server = match std::env::var(SERVER_ENV) {
        Ok(url) => TestServer { url, _own: None },
        Err(_) => {
            let own = PostgresServer::start().expect("a PostgreSQL server for the tests starts");
            TestServer { url: own.url(), _own: Some(own) }
        }
    };
    let server = Arc::new(server);
    *shared = Arc::downgrade(&server);
    server
}

/// A server tests can create databases on.
pub struct TestServer {
    url: String,
    _own: Option<PostgresServer>,
}

impl TestServer {
    /// Creates a new, empty database; returns its URL.
    pub fn create_database(&self) -> String {
        let name = format!("rewind_test_{}", hex_id());
        let admin = self.url.clone();
        let sql = format!("CREATE DATABASE {name}");
        // On a thread of its own: callers are often inside a runtime.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.expect("connects");
                tokio::spawn(conn);
                client.batch_execute(&sql).await.expect("CREATE DATABASE");
            });
        })
        .join()
        .expect("creating a test database");
        let base = self.url.rsplit_once('/').map_or(self.url.as_str(), |(b, _)| b);
        format!("{base}/{name}")
    }
}

fn hex_id() -> String {
    let mut b = [0u8; 8];
    rewind_crypto::aead::random_bytes(&mut b).expect("randomness");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The PostgreSQL engine on a database of its own. Every call to `engine` is a new
/// connection pool: what another process (or a restart) sees.
pub struct PostgresFixture {
    url: String,
    _server: Arc<TestServer>,
}

impl PostgresFixture {
    /// A fresh database on the test server.
    pub fn new() -> Self {
        let server = test_server();
        Self { url: server.create_database(), _server: server }
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Default for PostgresFixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture for PostgresFixture {
    fn engine(&self) -> Arc<dyn Engine> {
        Arc::new(PostgresEngine::connect(&PostgresOptions::new(self.url.clone())).expect("the journal database opens"))
    }
}
