//! Reaching PostgreSQL as libpq does: every `sslmode`, root and client
//! certificates, the `PG*` variables and the password file. Each case runs
//! psql and the sidecar's `migrate` with the same URL and environment against
//! a private PostgreSQL whose certificate names `localhost` only, and
//! requires both to connect, or both to be refused, as libpq's rules say.

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::certificates::Authority;
use common::dev::BINARY;
use common::postgres::OwnedPostgres;

/// The private server, TLS on, and the files a client may be given.
struct Secured {
    server: OwnedPostgres,
    /// The CA that signed the server's certificate, and one that did not.
    ca: PathBuf,
    other_ca: PathBuf,
    /// `certuser`'s client certificate and key, signed by `ca`.
    client_cert: PathBuf,
    client_key: PathBuf,
}

/// Roles, each reaching the server one way (`pg_hba.conf`, first match wins).
const HBA: &str = "\
local   all all                    trust
hostssl all certuser 127.0.0.1/32  trust clientcert=verify-full
host    all certuser 127.0.0.1/32  reject
hostssl all sslonly  127.0.0.1/32  trust
host    all sslonly  127.0.0.1/32  reject
host    all pwuser   127.0.0.1/32  scram-sha-256
host    all all      127.0.0.1/32  trust
";

fn secured(name: &str) -> Secured {
    let server = OwnedPostgres::start(name);
    let dir = server.data_dir.clone();
    let files = common::scratch(&format!("{name}-files"));
    let (ca, other) = (Authority::new(), Authority::new());

    // The server's certificate names `localhost` only, as Debian's snakeoil does.
    let (cert, key) = ca.issue(&["localhost"]);
    let owner = std::fs::metadata(&dir).unwrap();
    for (name, contents) in [("server.crt", cert.as_str()), ("server.key", &key), ("client-ca.crt", &ca.pem)] {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::write(dir.join("pg_hba.conf"), HBA).unwrap();
    let admin = server.url("postgres");
    psql_admin(
        &admin,
        &[
            "ALTER SYSTEM SET ssl = on",
            "ALTER SYSTEM SET ssl_cert_file = 'server.crt'",
            "ALTER SYSTEM SET ssl_key_file = 'server.key'",
            "ALTER SYSTEM SET ssl_ca_file = 'client-ca.crt'",
            "CREATE ROLE certuser LOGIN SUPERUSER",
            "CREATE ROLE sslonly LOGIN SUPERUSER",
            "CREATE ROLE pwuser LOGIN SUPERUSER PASSWORD 's3cret'",
            "SELECT pg_reload_conf()",
        ],
    );
    let started = Instant::now();
    while !psql_admin_ok(&format!("{admin}?sslmode=require")) {
        assert!(started.elapsed() < Duration::from_secs(10), "TLS did not come on after the reload");
        std::thread::sleep(Duration::from_millis(50));
    }

    let write = |name: &str, contents: &str| {
        let path = files.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    };
    let (client_cert, client_key) = ca.issue_client("certuser");
    Secured {
        ca: write("ca.crt", &ca.pem),
        other_ca: write("other-ca.crt", &other.pem),
        client_cert: write("certuser.crt", &client_cert),
        client_key: write("certuser.key", &client_key),
        server,
    }
}

/// psql of the installed server version, as Debian installs it.
fn psql() -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL's binaries");
    let mut found: Vec<PathBuf> =
        versions.flatten().map(|v| v.path().join("bin/psql")).filter(|path| path.exists()).collect();
    found.sort();
    found.pop().expect("psql")
}

/// Runs each statement on its own (ALTER SYSTEM refuses a transaction block).
fn psql_admin(url: &str, statements: &[&str]) {
    let mut command = Command::new(psql());
    command.args([url, "-v", "ON_ERROR_STOP=1", "-qAt"]);
    for statement in statements {
        command.args(["-c", statement]);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn psql_admin_ok(url: &str) -> bool {
    Command::new(psql()).args([url, "-qAtc", "SELECT 1"]).output().unwrap().status.success()
}

/// A command with nothing of this process's environment but PATH, and `home` as HOME.
fn isolated(program: impl AsRef<std::ffi::OsStr>, home: &Path, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(program);
    command.env_clear().env("PATH", std::env::var("PATH").unwrap()).env("HOME", home).env("PGCONNECT_TIMEOUT", "5");
    command.env("RUST_LOG", "info").env("NO_COLOR", "1");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// Whether psql and the sidecar connect with `url` and `env`; what both said on stderr.
fn both(url: &str, home: &Path, env: &[(&str, String)]) -> (bool, bool, String) {
    // -w: never prompt for a password; a missing one is a refusal, as for the sidecar.
    let psql = isolated(psql(), home, env).args(["-w", url, "-qAtc", "SELECT 1"]).output().unwrap();
    let sidecar = isolated(BINARY, home, env).args(["migrate", "--database-url", url]).output().unwrap();
    let said = format!(
        "\npsql said: {}\nthe sidecar said: {}",
        String::from_utf8_lossy(&psql.stderr),
        String::from_utf8_lossy(&sidecar.stderr)
    );
    (psql.status.success(), sidecar.status.success(), said)
}

/// Text that says the sidecar warned of an encrypted but unverified connection.
const UNVERIFIED: &str = "server's certificate is not verified";

#[test]
fn every_sslmode_connects_or_refuses_exactly_as_psql_does() {
    let secured = secured("libpq-modes");
    let port = secured.server.port;
    let home = common::scratch("libpq-home");
    let (ca, other_ca) = (secured.ca.display(), secured.other_ca.display());
    let (cert, key) = (secured.client_cert.display(), secured.client_key.display());
    let url = |user: &str, host: &str, params: &str| format!("postgresql://{user}@{host}:{port}/postgres?{params}");
    // (what, URL, connects, warns of an unverified server)
    let cases = [
        ("disable", url("postgres", "127.0.0.1", "sslmode=disable"), true, false),
        ("allow: plaintext first", url("postgres", "127.0.0.1", "sslmode=allow"), true, true),
        ("prefer", url("postgres", "127.0.0.1", "sslmode=prefer"), true, true),
        ("require encrypts without verifying", url("postgres", "127.0.0.1", "sslmode=require"), true, true),
        (
            "require with a root verifies the chain",
            url("postgres", "127.0.0.1", &format!("sslmode=require&sslrootcert={ca}")),
            true,
            false,
        ),
        (
            "require with another CA's root",
            url("postgres", "127.0.0.1", &format!("sslmode=require&sslrootcert={other_ca}")),
            false,
            false,
        ),
        (
            "verify-ca ignores the host name",
            url("postgres", "127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")),
            true,
            false,
        ),
        ("verify-ca needs a root", url("postgres", "127.0.0.1", "sslmode=verify-ca"), false, false),
        (
            "verify-full checks the host name",
            url("postgres", "127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}")),
            false,
            false,
        ),
        (
            "verify-full with the right name",
            url("postgres", "localhost", &format!("sslmode=verify-full&sslrootcert={ca}")),
            true,
            false,
        ),
        ("a TLS-only role refuses disable", url("sslonly", "127.0.0.1", "sslmode=disable"), false, false),
        ("allow retries with TLS", url("sslonly", "127.0.0.1", "sslmode=allow"), true, true),
        ("clientcert=verify-full without a certificate", url("certuser", "127.0.0.1", "sslmode=require"), false, true),
        (
            "clientcert=verify-full with one",
            url("certuser", "127.0.0.1", &format!("sslmode=require&sslcert={cert}&sslkey={key}")),
            true,
            true,
        ),
        (
            "a client certificate under verify-full",
            url("certuser", "localhost", &format!("sslmode=verify-full&sslrootcert={ca}&sslcert={cert}&sslkey={key}")),
            true,
            false,
        ),
        ("a password role without a password", url("pwuser", "127.0.0.1", "sslmode=disable"), false, false),
    ];
    for (what, url, connects, warns) in cases {
        let (psql, sidecar, stderr) = both(&url, &home, &[]);
        assert_eq!(psql, connects, "{what}: psql with {url}{stderr}");
        assert_eq!(sidecar, connects, "{what}: the sidecar with {url}: {stderr}");
        if sidecar {
            let stderr = stderr.split("the sidecar said:").nth(1).unwrap();
            assert_eq!(stderr.contains(UNVERIFIED), warns, "{what}: the unverified-server warning: {stderr}");
            assert_eq!(stderr.matches(UNVERIFIED).count(), usize::from(warns), "{what}: warned once: {stderr}");
        }
    }
}

#[test]
fn the_environment_and_the_password_file_are_read_as_psql_reads_them() {
    let secured = secured("libpq-environment");
    let port = secured.server.port.to_string();
    let home = common::scratch("libpq-env-home");
    let ca = secured.ca.display().to_string();

    // PG* variables fill what the string leaves out; the string wins over them.
    let env = |host: &str, mode: &str| {
        vec![
            ("PGHOST", host.to_owned()),
            ("PGPORT", port.clone()),
            ("PGUSER", "postgres".to_owned()),
            ("PGSSLMODE", mode.to_owned()),
            ("PGSSLROOTCERT", ca.clone()),
        ]
    };
    for (what, conninfo, env, connects) in [
        ("verify-full from PGSSLMODE, right name", "dbname=postgres", env("localhost", "verify-full"), true),
        ("verify-full from PGSSLMODE, wrong name", "dbname=postgres", env("127.0.0.1", "verify-full"), false),
        (
            "the string's sslmode wins over PGSSLMODE",
            "dbname=postgres sslmode=verify-ca",
            env("127.0.0.1", "verify-full"),
            true,
        ),
        ("the string's host wins over PGHOST", "host=localhost dbname=postgres", env("127.0.0.1", "verify-full"), true),
    ] {
        let (psql, sidecar, stderr) = both(conninfo, &home, &env);
        assert_eq!((psql, sidecar), (connects, connects), "{what}: {stderr}");
    }

    // With PGHOST set, the URL may be left out altogether, as psql needs none.
    let alone = isolated(BINARY, &home, &env("localhost", "verify-full")).args(["migrate"]).output().unwrap();
    assert!(alone.status.success(), "PG* alone: {}", String::from_utf8_lossy(&alone.stderr));
    let nothing = isolated(BINARY, &home, &[]).args(["migrate"]).output().unwrap();
    assert!(!nothing.status.success(), "neither a URL nor PGHOST: refused");

    // The password: PGPASSWORD, else ~/.pgpass, else the file PGPASSFILE names,
    // and never a file others may read.
    let url = format!("postgresql://pwuser@127.0.0.1:{port}/postgres?sslmode=disable");
    let pgpass = home.join(".pgpass");
    std::fs::write(&pgpass, format!("# a comment\n127.0.0.1:{port}:postgres:pwuser:s3cret\n")).unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (psql, sidecar, stderr) = both(&url, &home, &[]);
    assert_eq!((psql, sidecar), (true, true), "~/.pgpass: {stderr}");

    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (psql, sidecar, stderr) = both(&url, &home, &[]);
    assert_eq!((psql, sidecar), (false, false), "a password file others may read is ignored: {stderr}");

    let elsewhere = common::scratch("libpq-passfile").join("passwords");
    std::fs::write(&elsewhere, format!("*:{port}:*:pwuser:s3cret\n")).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (psql, sidecar, stderr) = both(&url, &home, &[("PGPASSFILE", elsewhere.display().to_string())]);
    assert_eq!((psql, sidecar), (true, true), "PGPASSFILE: {stderr}");

    let (psql, sidecar, stderr) = both(&url, &home, &[("PGPASSWORD", "wrong".to_owned())]);
    assert_eq!((psql, sidecar), (false, false), "PGPASSWORD wins over the file: {stderr}");

    // ~/.postgresql/root.crt is the root when none is named.
    std::fs::create_dir_all(home.join(".postgresql")).unwrap();
    std::fs::copy(&secured.ca, home.join(".postgresql/root.crt")).unwrap();
    let verify_ca = format!("postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=verify-ca");
    let (psql, sidecar, stderr) = both(&verify_ca, &home, &[]);
    assert_eq!((psql, sidecar), (true, true), "~/.postgresql/root.crt: {stderr}");
}
