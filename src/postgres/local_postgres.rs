//! A private PostgreSQL from the machine's installed server binaries, for
//! `governance-sidecar dev` and for the tests: no setup, no shared state.
//!
//! The server runs in its own data directory, listens on 127.0.0.1 only, and
//! dies with the process that started it (`PR_SET_PDEATHSIG`), so no test
//! run leaves a server behind. As root it runs as the `postgres` system user,
//! since PostgreSQL refuses to run as root.
//!
//! The crate's one home of `unsafe`: libc calls for process credentials and
//! signals, each with its SAFETY comment.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Where Debian installs the server binaries, newest version first.
fn server_bin_dir() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "no PostgreSQL server binaries found under /usr/lib/postgresql; install them with \
             `apt-get install postgresql` or pass --database-url"
        ),
    }
}

/// The user and group to run as: `postgres` when we are root, else ourselves.
fn run_as() -> anyhow::Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam returns null or a pointer to a static passwd record that
    // we read immediately, before any other call could overwrite it.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        bail!("running as root needs a `postgres` system user to run PostgreSQL (it refuses root)");
    }
    // SAFETY: entry is non-null and points to a valid passwd record.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some((uid, gid)))
}

/// A running private server. Dropping it stops the server.
pub struct LocalPostgres {
    pub port: u16,
    pub data_dir: PathBuf,
    child: Child,
}

impl LocalPostgres {
    /// Initialises `data_dir` if it is empty and starts a server on `port` (0: any free port).
    ///
    /// The server is tied to the calling thread's lifetime by the kernel, so
    /// call this from a thread that lives as long as the server should.
    pub fn start(data_dir: &Path, port: u16, durable: bool) -> anyhow::Result<LocalPostgres> {
        LocalPostgres::start_with(data_dir, port, durable, &[])
    }

    /// A streaming standby of the local primary on `primary_port`, in
    /// `data_dir` (which must not hold a server yet), copied with
    /// `pg_basebackup -R` and started on `port`.
    pub fn start_standby(primary_port: u16, data_dir: &Path, port: u16) -> anyhow::Result<LocalPostgres> {
        let owner = run_as()?;
        let data_dir = &owned_data_dir(data_dir, owner)?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            // initdb would set this; pg_basebackup keeps what it finds, and
            // PostgreSQL refuses a data directory others may read.
            std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let output = as_owner(Command::new(server_bin_dir()?.join("pg_basebackup")), owner)
            .args(["-h", "127.0.0.1", "-p", &primary_port.to_string(), "-U", "postgres", "-R", "-X", "stream", "-D"])
            .arg(data_dir)
            .output()
            .context("running pg_basebackup")?;
        if !output.status.success() {
            bail!("pg_basebackup failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        // The copy holds the primary's logs, and its own settings come from the primary's.
        let _ = std::fs::remove_file(data_dir.join("server.log"));
        LocalPostgres::start_with(data_dir, port, true, &[])
    }

    /// Like [`LocalPostgres::start`], with more `-c name=value` settings.
    pub fn start_with(data_dir: &Path, port: u16, durable: bool, settings: &[&str]) -> anyhow::Result<LocalPostgres> {
        let bin = server_bin_dir()?;
        let owner = run_as()?;
        let data_dir = &owned_data_dir(data_dir, owner)?;

        if !data_dir.join("PG_VERSION").exists() {
            let output = as_owner(Command::new(bin.join("initdb")), owner)
                .args(["-D"])
                .arg(data_dir)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
                .output()
                .context("running initdb")?;
            if !output.status.success() {
                bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr));
            }
        }

        let port = if port == 0 { free_port()? } else { port };
        let mut command = as_owner(Command::new(bin.join("postgres")), owner);
        command
            .arg("-D")
            .arg(data_dir)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", data_dir.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(data_dir.join("server.log"))?);
        if !durable {
            command.args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]);
        }
        for setting in settings {
            command.args(["-c", setting]);
        }
        // SAFETY: prctl is async-signal-safe; the closure only calls it.
        unsafe {
            command.pre_exec(|| {
                // SIGINT is PostgreSQL's "fast shutdown".
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().context("starting postgres")?;
        let server = LocalPostgres { port, data_dir: data_dir.to_owned(), child };
        server.wait_until_ready(Duration::from_secs(30))?;
        Ok(server)
    }

    /// A libpq-style URL for `database` as the `postgres` superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn wait_until_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // Accepting TCP is not yet accepting queries: ask pg_isready.
                let ready = Command::new(server_bin_dir()?.join("pg_isready"))
                    .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
                    .stdout(Stdio::null())
                    .status()?;
                if ready.success() {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default();
        bail!("PostgreSQL did not start within {timeout:?}:\n{log}")
    }
}

impl LocalPostgres {
    /// Stops the server as a crash would (immediate shutdown: no checkpoint,
    /// connections cut), as a failing primary goes away.
    pub fn stop_immediately(mut self) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGQUIT);
        }
        let _ = self.child.wait();
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return; // Already gone (and reaped: its pid may be another's now).
        }
        // SAFETY: sending a signal to our own child process, which has not been reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT);
        }
        let _ = self.child.wait();
    }
}

fn as_owner(mut command: Command, owner: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
        // The postgres user cannot read root's working directory.
        command.current_dir("/");
    }
    command
}

/// `data_dir`, made absolute, created, and owned by the user the server runs as.
fn owned_data_dir(data_dir: &Path, owner: Option<(u32, u32)>) -> anyhow::Result<PathBuf> {
    let data_dir = std::path::absolute(data_dir)?;
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&data_dir, Some(uid), Some(gid))?;
        ensure_traversable(&data_dir)?;
    }
    Ok(data_dir)
}

/// The `postgres` user must be able to reach the data directory.
fn ensure_traversable(data_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    for ancestor in data_dir.ancestors().skip(1) {
        let mode = std::fs::metadata(ancestor)?.permissions().mode();
        if mode & 0o001 == 0 {
            bail!(
                "the postgres user cannot reach {}: {} is not traversable by others; choose a data directory \
                 elsewhere (e.g. under /tmp or /var/tmp)",
                data_dir.display(),
                ancestor.display()
            );
        }
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
