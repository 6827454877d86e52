//! A throwaway PostgreSQL cluster from the system's binaries, for tests and benchmarks:
//! `initdb` in a temporary folder, `pg_ctl start` on a free loopback port, stopped and
//! removed when dropped. Only the standard library: `cargo xtask ci` compiles this file too.
//!
//! PostgreSQL refuses to run as root; as root the cluster runs as the `postgres` user (which
//! Debian's package creates) through `runuser`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the system's PostgreSQL server binaries are: `initdb` on the `PATH`, else the
/// newest `/usr/lib/postgresql/<version>/bin` (Debian keeps them off the `PATH`).
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// What to install when there are no binaries.
pub const INSTALL_HINT: &str = "PostgreSQL's server binaries (initdb, pg_ctl) were not found: \
     install Debian's `postgresql` package (apt-get install postgresql), or set \
     SWITCHBOARD_TEST_DATABASE_URL to a database the tests may create schemas in";

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A running throwaway cluster.
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    /// The user the server runs as, when we are root.
    user: Option<&'static str>,
    pub port: u16,
    /// `postgres://switchboard@127.0.0.1:<port>/postgres`
    pub url: String,
}

impl Cluster {
    /// `program` of the cluster's binaries, run as the cluster's user.
    fn command(bin: &Path, user: Option<&str>, program: &str) -> Command {
        match user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(bin.join(program));
                c
            }
            None => Command::new(bin.join(program)),
        }
    }

    /// Create and start a cluster in a new folder under `parent` (a temporary folder when
    /// `None`), with `settings` (`name=value`) passed to the server.
    pub fn start(parent: Option<&Path>, settings: &[&str]) -> Result<Cluster, String> {
        let bin = bin_dir().ok_or(INSTALL_HINT)?;
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let dir = parent.join(format!(
            "switchboard-pg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let user = is_root().then_some("postgres");
        if let Some(user) = user {
            let owned = Command::new("chown")
                .args([&format!("{user}:"), &dir.display().to_string()])
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !owned.success() {
                return Err(format!(
                    "running as root, the cluster must run as the '{user}' user, and chown to it failed (is there a '{user}' user? Debian's postgresql package creates it)"
                ));
            }
        }
        let data = dir.join("data");
        let out = Self::command(&bin, user, "initdb")
            .args(["-D", &data.display().to_string()])
            .args([
                "-U",
                "switchboard",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
            ])
            .arg("--no-sync")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("initdb: cannot start: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let mut server = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400",
            dir.display()
        );
        for setting in settings {
            server.push_str(&format!(" -c {setting}"));
        }
        let cluster = Cluster {
            url: format!("postgres://switchboard@127.0.0.1:{port}/postgres"),
            dir,
            bin,
            user,
            port,
        };
        // However this process ends (a SIGKILL included), a watcher stops and removes the
        // cluster after it; dropping the cluster does it at once.
        cluster.watch(std::process::id())?;
        let out = Self::command(&cluster.bin, user, "pg_ctl")
            .args(["-D", &data.display().to_string()])
            .args(["-l", &cluster.dir.join("log").display().to_string()])
            .args(["-w", "-t", "60", "-o", &server, "start"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("pg_ctl: cannot start: {e}"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(cluster.dir.join("log")).unwrap_or_default();
            return Err(format!(
                "pg_ctl start failed: {}\n{log}",
                String::from_utf8_lossy(&out.stdout).trim()
            ));
        }
        Ok(cluster)
    }

    /// The folder the cluster lives in (removed with it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The shell command that stops the cluster and removes its folder.
    fn teardown_script(&self) -> String {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = format!(
            "{} -D {} -m immediate -w stop",
            pg_ctl.display(),
            self.dir.join("data").display()
        );
        let stop = match self.user {
            Some(user) => format!("runuser -u {user} -- {stop}"),
            None => stop,
        };
        format!("{stop} >/dev/null 2>&1; rm -rf {}", self.dir.display())
    }

    /// Stop the cluster and remove it once process `pid` has ended (a watcher process).
    fn watch(&self, pid: u32) -> Result<(), String> {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {}",
            self.teardown_script()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(|_| ())
            .map_err(|e| format!("starting the cluster's watcher: {e}"))
    }

    /// Keep the cluster until this process ends (for one kept in a `static`, which is never
    /// dropped); returns its URL.
    pub fn keep_until_exit(self) -> String {
        let url = self.url.clone();
        std::mem::forget(self);
        url
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .args(["-c", &self.teardown_script()])
            .status();
    }
}
