//! libpq's conventions for where and how to connect, so that a URL, a
//! `PG*` variable or a `.pgpass` line means here what it means to psql.
//!
//! tokio-postgres knows the URL and key/value forms but not all of libpq's
//! parameters (`sslmode=verify-ca`, `verify-full` and `allow`, `sslrootcert`,
//! `sslcert`, `sslkey`, `passfile`), nor the environment or the password file.
//! So the connection string is read here, in either form, into libpq
//! keywords; the TLS keywords are taken out ([`super::tls`] applies them);
//! each keyword left unset is taken from its `PG*` variable; and what
//! remains is handed to tokio-postgres, which checks it.
//!
//! Precedence, as libpq's: the connection string, then the environment, then
//! the defaults (the OS user, the local socket, port 5432); a password from
//! neither is looked up in the password file (`PGPASSFILE`, else
//! `~/.pgpass`), which is ignored, as libpq ignores it, when group or others
//! may read it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::tls::{SslMode, TlsOptions};

/// Where a process's environment is read from (the real one, or a test's).
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process's own environment.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }
}

/// Everything needed to open a connection: the server and session, and TLS.
#[derive(Debug, Clone)]
pub struct ConnectionTarget {
    pub config: tokio_postgres::Config,
    pub tls: TlsOptions,
}

/// The libpq variables and the keyword each stands for (`PGHOST` → `host`).
const ENVIRONMENT: &[(&str, &str)] = &[
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGDATABASE", "dbname"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGPASSFILE", "passfile"),
    ("PGOPTIONS", "options"),
    ("PGAPPNAME", "application_name"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
    ("PGCHANNELBINDING", "channel_binding"),
];

/// Keywords read here rather than by tokio-postgres.
const OURS: &[&str] = &["sslmode", "sslrootcert", "sslcert", "sslkey", "passfile"];

/// Where libpq looks for the server's socket when no host is given (Debian's).
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
const DEFAULT_PORT: &str = "5432";

/// Resolves a connection string as libpq would. `root_cert` is the operator's
/// `--database-ca-file`, an alias of `sslrootcert` that the string overrides.
pub fn resolve(
    conninfo: &str,
    root_cert: Option<&Path>,
    environment: &impl Environment,
) -> anyhow::Result<ConnectionTarget> {
    let mut keywords = parse(conninfo)?;
    for (variable, keyword) in ENVIRONMENT {
        if keywords.get(keyword).is_none()
            && let Some(value) = environment.var(variable)
        {
            keywords.set(keyword, value);
        }
    }
    if keywords.get("sslrootcert").is_none()
        && let Some(path) = root_cert
    {
        keywords.set("sslrootcert", path.display().to_string());
    }
    if keywords.get("user").is_none() {
        let user = environment.var("USER").or_else(|| environment.var("LOGNAME"));
        keywords.set("user", user.context("no user: set one in the URL or in PGUSER")?);
    }
    if keywords.get("host").is_none() && keywords.get("hostaddr").is_none() {
        keywords.set("host", DEFAULT_SOCKET_DIR.to_owned());
    }
    let home = environment.var("HOME").map(PathBuf::from);
    if keywords.get("password").is_none()
        && let Some(password) = password_from_file(&keywords, home.as_deref())?
    {
        keywords.set("password", password);
    }
    let tls = TlsOptions::from_keywords(
        keywords.get("sslmode").map(str::parse::<SslMode>).transpose()?,
        keywords.get("sslrootcert"),
        keywords.get("sslcert"),
        keywords.get("sslkey"),
        home.as_deref(),
    )?;
    let mut config: tokio_postgres::Config = keywords
        .render_without(OURS)
        .parse()
        .map_err(|error| anyhow::anyhow!("the database URL is not one PostgreSQL's client accepts: {error}"))?;
    config.ssl_mode(tls.mode.transport());
    Ok(ConnectionTarget { config, tls })
}

/// A connection string's keywords, each once (a later one replaces an earlier).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Keywords(Vec<(String, String)>);

impl Keywords {
    fn get(&self, keyword: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == keyword).map(|(_, v)| v.as_str())
    }

    fn set(&mut self, keyword: &str, value: String) {
        self.0.retain(|(k, _)| k != keyword);
        self.0.push((keyword.to_owned(), value));
    }

    /// The key/value form tokio-postgres reads, each value quoted.
    fn render_without(&self, skipped: &[&str]) -> String {
        let mut rendered = String::new();
        for (keyword, value) in &self.0 {
            if skipped.contains(&keyword.as_str()) {
                continue;
            }
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            rendered.push_str(&format!("{keyword}='{quoted}' "));
        }
        rendered
    }
}

/// Either form of a connection string: `postgres[ql]://…` or `key=value …`.
fn parse(conninfo: &str) -> anyhow::Result<Keywords> {
    let conninfo = conninfo.trim();
    match ["postgresql://", "postgres://"].iter().find_map(|prefix| conninfo.strip_prefix(prefix)) {
        Some(rest) => parse_url(rest),
        None => parse_key_values(conninfo),
    }
}

/// `[user[:password]@][host[:port][,…]][/dbname][?keyword=value&…]`, percent-encoded.
fn parse_url(rest: &str) -> anyhow::Result<Keywords> {
    let mut keywords = Keywords::default();
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, dbname) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            keywords.set("user", decode(user, "the user name")?);
        }
        if let Some(password) = password {
            keywords.set("password", decode(password, "the password")?);
        }
    }
    if !hosts.is_empty() {
        let (mut names, mut ports) = (Vec::new(), Vec::new());
        for host in hosts.split(',') {
            let (name, port) = match host.strip_prefix('[') {
                Some(bracketed) => {
                    let (name, after) = bracketed.split_once(']').context("an IPv6 host lacks its `]`")?;
                    (name, after.strip_prefix(':').unwrap_or(""))
                }
                None => host.split_once(':').unwrap_or((host, "")),
            };
            names.push(decode(name, "a host name")?);
            ports.push(decode(port, "a port")?);
        }
        if names.iter().any(|name| !name.is_empty()) {
            keywords.set("host", names.join(","));
        }
        if ports.iter().any(|port| !port.is_empty()) {
            let ports: Vec<&str> = ports.iter().map(|p| if p.is_empty() { DEFAULT_PORT } else { p }).collect();
            keywords.set("port", ports.join(","));
        }
    }
    if !dbname.is_empty() {
        keywords.set("dbname", decode(dbname, "the database name")?);
    }
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        // Never quoted in an error: a parameter may be a password.
        let (keyword, value) = pair.split_once('=').context("a URL parameter has no `=`")?;
        let keyword = decode(keyword, "a URL parameter's name")?;
        let value = decode(value, &format!("the value of URL parameter {keyword:?}"))?;
        keywords.set(&keyword, value);
    }
    Ok(keywords)
}

/// `keyword = value …`, values bare or single-quoted, `\` escaping.
fn parse_key_values(conninfo: &str) -> anyhow::Result<Keywords> {
    let mut keywords = Keywords::default();
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let keyword: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if keyword.is_empty() {
            return Ok(keywords);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            bail!("connection parameter {keyword:?} has no `=`");
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let quoted = chars.next_if_eq(&'\'').is_some();
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => value.extend(chars.next()),
                Some('\'') if quoted => break,
                Some(c) if !quoted && c.is_whitespace() => break,
                Some(c) => value.push(c),
                None if quoted => bail!("the value of {keyword:?} lacks its closing quote"),
                None => break,
            }
        }
        keywords.set(&keyword, value);
    }
}

/// Percent-decoding, as URLs encode what they cannot hold. Errors name
/// `what` was being decoded, never its text: it may be a password.
fn decode(text: &str, what: &str) -> anyhow::Result<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).with_context(|| format!("{what} has a broken %-escape"))?;
            decoded.push(u8::from_str_radix(hex, 16).with_context(|| format!("{what} has a broken %-escape"))?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).with_context(|| format!("{what} is not UTF-8 once decoded"))
}

/// The password for the first host from the password file, if a line matches.
fn password_from_file(keywords: &Keywords, home: Option<&Path>) -> anyhow::Result<Option<String>> {
    let path = match (keywords.get("passfile"), home) {
        (Some(path), _) => PathBuf::from(path),
        (None, Some(home)) => home.join(".pgpass"),
        (None, None) => return Ok(None),
    };
    let Ok(metadata) = std::fs::metadata(&path) else { return Ok(None) };
    {
        use std::os::unix::fs::PermissionsExt as _;
        if metadata.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "password file has group or world access; permissions should be u=rw (0600) or less: ignored"
            );
            return Ok(None);
        }
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let first = |keyword: &str| keywords.get(keyword).and_then(|list| list.split(',').next()).unwrap_or("");
    let host = match first("host") {
        // libpq matches a socket directory (and no host) as `localhost`.
        "" => "localhost",
        host if host.starts_with('/') => "localhost",
        host => host,
    };
    let port = match first("port") {
        "" => DEFAULT_PORT,
        port => port,
    };
    let user = first("user");
    let dbname = match first("dbname") {
        "" => user,
        dbname => dbname,
    };
    Ok(text.lines().find_map(|line| pgpass_match(line, [host, port, dbname, user])))
}

/// The password of a `host:port:database:user:password` line whose first
/// four fields match (`*` matches anything; `\:` and `\\` are escapes).
fn pgpass_match(line: &str, wanted: [&str; 4]) -> Option<String> {
    if line.starts_with('#') {
        return None;
    }
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.extend(chars.next()),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    let [host, port, dbname, user, password] = <[String; 5]>::try_from(fields).ok()?;
    let matches = [host, port, dbname, user].iter().zip(wanted).all(|(field, want)| field == "*" || field == want);
    matches.then_some(password)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_malformed_url_is_refused_without_quoting_its_password() {
        for url in [
            "postgresql://app:s3cr%zzet@db/app",
            "postgresql://app:s3cr%e9t@db/app",
            "postgresql://app@db/app?password=s3cr%zzet",
            "postgresql://app@db/app?s3cret",
        ] {
            let error = format!("{:#}", parse(url).unwrap_err());
            assert!(!error.contains("s3cr"), "{url}: {error}");
        }
    }

    struct Vars(HashMap<&'static str, String>);

    impl Environment for Vars {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn vars(pairs: &[(&'static str, &str)]) -> Vars {
        Vars(pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect())
    }

    fn keywords(pairs: &[(&str, &str)]) -> Keywords {
        Keywords(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn urls_are_read_as_libpq_reads_them() {
        let url = "postgresql://us%40er:p%3Ass@db1:6432,[::1],db3:7/app%20db?sslmode=verify-full&application_name=x";
        assert_eq!(
            parse(url).unwrap(),
            keywords(&[
                ("user", "us@er"),
                ("password", "p:ss"),
                ("host", "db1,::1,db3"),
                ("port", "6432,5432,7"),
                ("dbname", "app db"),
                ("sslmode", "verify-full"),
                ("application_name", "x"),
            ])
        );
        assert_eq!(parse("postgres://").unwrap(), Keywords::default());
        assert_eq!(parse("postgres://%2Fvar%2Frun%2Fpostgresql/db").unwrap().get("host"), Some("/var/run/postgresql"));
        assert!(parse("postgres://h/db?sslmode").is_err());
        assert!(parse("postgres://u:%zz@h/db").is_err());
    }

    #[test]
    fn key_value_strings_are_read_with_quotes_and_escapes() {
        let parsed = parse(r"host=db  port = 5433 password='it\'s a \\ secret' dbname=app").unwrap();
        assert_eq!(
            parsed,
            keywords(&[("host", "db"), ("port", "5433"), ("password", r"it's a \ secret"), ("dbname", "app")])
        );
        assert!(parse("host='db").is_err());
        assert!(parse("host db").is_err());
    }

    #[test]
    fn the_string_wins_over_the_environment_and_the_environment_over_defaults() {
        let environment =
            vars(&[("PGHOST", "envhost"), ("PGUSER", "envuser"), ("PGPORT", "6000"), ("PGSSLMODE", "require")]);
        let target = resolve("postgresql://urluser@urlhost/app", None, &environment).unwrap();
        let config = target.config;
        assert_eq!(config.get_user(), Some("urluser"));
        assert_eq!(config.get_ports(), [6000]);
        assert_eq!(format!("{:?}", config.get_hosts()), r#"[Tcp("urlhost")]"#);
        assert_eq!(target.tls.mode, SslMode::Require);

        let defaults = resolve("dbname=app", None, &vars(&[("USER", "osuser")])).unwrap();
        assert_eq!(defaults.config.get_user(), Some("osuser"));
        assert_eq!(format!("{:?}", defaults.config.get_hosts()), r#"[Unix("/var/run/postgresql")]"#);
        assert_eq!(defaults.tls.mode, SslMode::Prefer, "libpq's default sslmode");
    }

    #[test]
    fn unknown_parameters_and_modes_are_refused() {
        assert!(resolve("postgresql://u@h/db?sslmode=sometimes", None, &vars(&[])).is_err());
        assert!(resolve("postgresql://u@h/db?no_such_option=1", None, &vars(&[])).is_err());
    }

    #[test]
    fn pgpass_lines_match_field_by_field_with_wildcards_and_escapes() {
        let want = ["db", "5432", "app", "sidecar"];
        assert_eq!(pgpass_match("db:5432:app:sidecar:s3cret", want), Some("s3cret".into()));
        assert_eq!(pgpass_match("*:*:*:sidecar:any", want), Some("any".into()));
        assert_eq!(pgpass_match("db:5432:app:other:no", want), None);
        assert_eq!(pgpass_match(r"db:5432:app:sidecar:with\:colon:and more", want), Some("with:colon:and more".into()));
        assert_eq!(pgpass_match("# db:5432:app:sidecar:commented", want), None);
        assert_eq!(pgpass_match("db:5432:app", want), None);
    }

    #[test]
    fn the_password_file_is_read_only_when_no_one_else_may_read_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join(".pgpass");
        std::fs::write(&file, "127.0.0.1:5432:app:sidecar:from-file\n").unwrap();
        let url = "postgresql://sidecar@127.0.0.1/app";
        let home_var = home.path().to_str().unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let target = resolve(url, None, &vars(&[("HOME", home_var)])).unwrap();
        assert_eq!(target.config.get_password(), Some(&b"from-file"[..]));

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let target = resolve(url, None, &vars(&[("HOME", home_var)])).unwrap();
        assert_eq!(target.config.get_password(), None, "a file others may read is ignored, as libpq does");

        let target = resolve(url, None, &vars(&[("HOME", home_var), ("PGPASSWORD", "from-env")])).unwrap();
        assert_eq!(target.config.get_password(), Some(&b"from-env"[..]), "PGPASSWORD wins over the file");
    }
}
