//! The sidecar as a user meets it: Python (grpcio) and Node.js (@grpc/grpc-js)
//! clients, Kernite's own endpoint tests, the examples of docs/clients.md, and
//! the sessions of docs/quickstart.md, docs/authoring.md and docs/production.md
//! run as written (grpcurl, curl, psql and the binary itself), each against
//! its own `governance-sidecar dev` (private PostgreSQL, the invoice example)
//! or its own empty PostgreSQL. The
//! clients live in `tests/interop/`, the examples in `examples/`; their
//! toolchains are installed into `target/interop` (and `examples/node`) by
//! `tests/interop/setup.sh` on first use.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use sha2::Digest as _;

use common::dev::DevSidecar;

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn corpus() -> PathBuf {
    std::env::var_os("GOVERNANCE_CONFORMANCE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository().join("../shared/conformance/kernite-0.1.6-execute.jsonl"))
}

/// Runs `tests/interop/setup.sh` once per test binary; returns its output directory.
fn toolchains() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or(repository().join("target"));
        let dir = target.join("interop");
        let output = Command::new("bash").arg(repository().join("tests/interop/setup.sh")).arg(&dir).output().unwrap();
        common::assert_success("tests/interop/setup.sh", &output);
        dir
    })
}

/// Runs a client program against a fresh sidecar and returns what it printed.
/// A callers file granting one caller everything, and its token: the clients
/// authenticate as a service would against a sidecar with a callers file.
fn caller_with_token(name: &str) -> (PathBuf, String) {
    use std::os::unix::fs::PermissionsExt as _;
    let token = format!("{name}-token-{}", std::process::id());
    let digest = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    let file = common::scratch(&format!("{name}-callers")).join("callers.toml");
    let entry = format!(
        "[[callers]]\nname = \"{name}\"\ntoken_sha256 = \"{digest}\"\nworkspaces = [\"*\"]\n\
         operations = [\"decide\", \"execute\", \"read\", \"log\"]\n"
    );
    std::fs::write(&file, entry).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    (file, token)
}

fn run_client(program: &Path, script: &str) -> String {
    // The corpus is Kernite's answers without an operator's bundle.
    let name = format!("interop-{}", program.file_name().unwrap().to_string_lossy());
    let (callers, token) = caller_with_token(&name);
    let callers = callers.to_str().unwrap();
    let sidecar = DevSidecar::start_with(&name, &["--example-policies=false", "--callers", callers]);
    let output = Command::new(program)
        .arg(repository().join(script))
        .args(["--address", &sidecar.address, "--proto-dir"])
        .arg(repository().join("proto"))
        .arg("--corpus")
        .arg(corpus())
        .args(["--token", &token])
        .output()
        .unwrap();
    common::assert_success(script, &output);
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn python_grpcio_client_decides_writes_and_matches_the_corpus() {
    let printed = run_client(&toolchains().join("python/bin/python"), "tests/interop/python/client.py");
    println!("{printed}");
    assert!(printed.contains("ok: the same key replays the same evidence"), "{printed}");
    assert!(printed.contains("refusals of the corpus answered like Kernite 0.1.6"), "{printed}");
    assert!(printed.contains("ok: a call without the token is UNAUTHENTICATED"), "{printed}");
}

/// Kernite's own endpoint tests (`tests/test_cli_endpoints.py` of its sdist,
/// unchanged, the authoring ones included), posting to a running sidecar
/// instead of Kernite's server (`tests/interop/kernite/against_sidecar.py`).
#[test]
fn kernites_own_endpoint_tests_pass_against_the_sidecar() {
    let kernite = toolchains().join("kernite");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(common::TestServer::start(
        governance_sidecar::config::ServerSettings::default(),
        governance_sidecar::api::GovernanceApi::new(),
    ));
    let output = Command::new(kernite.join("bin/python"))
        .args(["-m", "pytest", "-p", "against_sidecar", "-q", "-p", "no:cacheprovider"])
        .arg(kernite.join("tests/test_cli_endpoints.py"))
        .env("PYTHONPATH", repository().join("tests/interop/kernite"))
        .env("SIDECAR_URL", format!("http://{}", server.address))
        .current_dir(&kernite)
        .output()
        .unwrap();
    common::assert_success("Kernite's test_cli_endpoints.py", &output);
    let printed = String::from_utf8_lossy(&output.stdout);
    println!("{printed}");
    assert!(printed.contains("5 passed"), "{printed}");
    drop(runtime.block_on(server.stop()));
}

#[test]
fn python_verifies_the_evidence_log_with_the_public_key_and_no_code_of_ours() {
    let (callers, token) = caller_with_token("interop-log");
    let sidecar = DevSidecar::start_with("interop-log", &["--callers", callers.to_str().unwrap()]);
    let public_key = std::fs::read_to_string(sidecar.data_dir.join("log-public-key")).unwrap();
    let output = Command::new(toolchains().join("python/bin/python"))
        .arg(repository().join("tests/interop/python/log_verifier.py"))
        .args(["--address", &sidecar.address, "--proto-dir"])
        .arg(repository().join("proto"))
        .args(["--public-key", public_key.trim(), "--token", &token])
        .output()
        .unwrap();
    common::assert_success("tests/interop/python/log_verifier.py", &output);
    let printed = String::from_utf8(output.stdout).unwrap();
    println!("{printed}");
    assert!(printed.contains("rows (approved and denied) proven in the signed tree"), "{printed}");
    assert!(printed.contains("is a prefix of the tree of"), "{printed}");
}

#[test]
fn node_grpc_js_client_decides_writes_and_matches_the_corpus() {
    toolchains();
    let printed = run_client(Path::new("node"), "tests/interop/node/client.js");
    println!("{printed}");
    assert!(printed.contains("ok: the same key replays the same evidence"), "{printed}");
    assert!(printed.contains("refusals of the corpus answered like Kernite 0.1.6"), "{printed}");
    assert!(printed.contains("ok: a call without the token is UNAUTHENTICATED"), "{printed}");
}

/// The documentation's sessions, run as written: each ```sh block of a page
/// in order, its printed output (stdout, then stderr) compared with the
/// ```text block that follows it, line by line, where `…` in a line stands for
/// any run of characters. Only addresses are put in (the page's
/// `127.0.0.1:50051` and `127.0.0.1:5432` are the test's), and the binary under
/// test stands for `cargo run --release --` and `target/release/governance-sidecar`.
/// A block that starts a server (`cargo run --release -- dev`,
/// `governance-sidecar serve`) leaves it running for the blocks after it, and
/// its text block lists lines the server prints in that order, among others
/// (the lines of its background tasks come in no fixed order).
mod pages {
    use std::io::BufRead as _;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// The sidecar's address as the pages write it, and the PostgreSQL's of production.md.
    pub const SIDECAR: &str = "127.0.0.1:50051";
    pub const POSTGRES: &str = "127.0.0.1:5432";

    /// A ```sh block and the ```text block after it.
    pub struct Step {
        pub line: usize,
        pub commands: String,
        pub expected: String,
    }

    /// The steps of a page. `every_block`: each ```sh block must be followed
    /// by its ```text block (a session page); otherwise blocks without one are skipped.
    pub fn steps(page: &Path, every_block: bool) -> Vec<Step> {
        let text = std::fs::read_to_string(page).unwrap();
        let mut steps = Vec::new();
        let mut pending: Option<(usize, String)> = None;
        let mut lines = text.lines().enumerate();
        while let Some((number, line)) = lines.next() {
            let Some(language) = line.strip_prefix("```") else { continue };
            let mut body = String::new();
            for (_, line) in lines.by_ref() {
                if line.starts_with("```") {
                    break;
                }
                body.push_str(line);
                body.push('\n');
            }
            match language.trim() {
                "sh" => {
                    if let Some((line, _)) = pending.take().filter(|_| every_block) {
                        panic!("{}:{line}: a sh block without the text block of its output", page.display());
                    }
                    pending = Some((number + 1, body));
                }
                "text" => {
                    if let Some((line, commands)) = pending.take() {
                        steps.push(Step { line, commands, expected: body });
                    }
                }
                _ => {}
            }
        }
        if let Some((line, _)) = pending.filter(|_| every_block) {
            panic!("{}:{line}: a sh block without the text block of its output", page.display());
        }
        steps
    }

    /// Whether `line` is `pattern`, where each `…` in the pattern stands for any run of characters.
    pub fn line_matches(pattern: &str, line: &str) -> bool {
        let mut parts = pattern.split('…');
        let Some(mut rest) = line.strip_prefix(parts.next().unwrap()) else { return false };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
        for part in middle {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.ends_with(last)
    }

    /// Printed text as a terminal shows it: no colour codes, no carriage
    /// returns, no trailing spaces or blank lines.
    pub fn printed_lines(text: &str) -> Vec<String> {
        let mut lines: Vec<String> = plain(text).lines().map(|line| line.trim_end().to_owned()).collect();
        while lines.last().is_some_and(|line| line.is_empty()) {
            lines.pop();
        }
        lines
    }

    /// Text without colour codes and carriage returns.
    fn plain(text: &str) -> String {
        let mut plain = String::with_capacity(text.len());
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\x1b' && chars.peek() == Some(&'[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else if c != '\r' {
                plain.push(c);
            }
        }
        plain
    }

    /// Replaces every `from` by its `to`, all at once (so that what one puts
    /// in is never replaced by another).
    pub fn substitute(text: &str, pairs: &[(String, String)]) -> String {
        let mut text = text.to_owned();
        for (i, (from, _)) in pairs.iter().enumerate() {
            text = text.replace(from.as_str(), &format!("\u{1}{i}\u{1}"));
        }
        for (i, (_, to)) in pairs.iter().enumerate() {
            text = text.replace(&format!("\u{1}{i}\u{1}"), to);
        }
        text
    }

    /// A server a page started.
    struct Server {
        child: Child,
    }

    impl Server {
        fn stop(&mut self) {
            // As Ctrl-C in its terminal would (bash's kill: no procps needed).
            let signalled =
                Command::new("bash").args(["-c", &format!("kill -INT {}", self.child.id())]).status().unwrap();
            assert!(signalled.success(), "kill -INT {}", self.child.id());
            let started = Instant::now();
            while self.child.try_wait().unwrap().is_none() {
                assert!(started.elapsed() < Duration::from_secs(30), "the server did not stop after SIGINT");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            if self.child.try_wait().ok().flatten().is_none() {
                self.stop();
            }
        }
    }

    /// One page's session: its shell, its servers, and the addresses put in.
    pub struct Session {
        page: PathBuf,
        directory: PathBuf,
        env: Vec<(String, String)>,
        /// (as the page writes it, as the test runs it)
        addresses: Vec<(String, String)>,
        server: Option<Server>,
    }

    impl Session {
        /// `scratch` becomes the session's TMPDIR and HOME; `tools` are put first on its PATH.
        pub fn new(page: PathBuf, directory: PathBuf, scratch: &Path, binary: &Path, tools: &[PathBuf]) -> Session {
            let bin = scratch.join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::os::unix::fs::symlink(binary, bin.join("governance-sidecar")).unwrap();
            let home = scratch.join("home");
            std::fs::create_dir_all(&home).unwrap();
            let mut path = vec![bin];
            path.extend(tools.iter().cloned());
            path.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap()));
            let path = std::env::join_paths(path).unwrap().into_string().unwrap();
            let env = vec![
                ("PATH".to_owned(), path),
                ("TMPDIR".to_owned(), scratch.display().to_string()),
                ("HOME".to_owned(), home.display().to_string()),
            ];
            Session { page, directory, env, addresses: Vec::new(), server: None }
        }

        /// The page's `written` address is `actual` in this run.
        pub fn address(&mut self, written: &str, actual: &str) {
            self.addresses.retain(|(from, _)| from != written);
            self.addresses.push((written.to_owned(), actual.to_owned()));
        }

        fn command(&self, script: &str) -> Command {
            let mut command = Command::new("timeout");
            command.args(["120", "bash", "-c", script]).current_dir(&self.directory);
            for (name, _) in std::env::vars_os() {
                let name = name.to_string_lossy();
                if name.starts_with("GOVERNANCE_") || name.starts_with("PG") || name == "RUST_LOG" {
                    command.env_remove(name.as_ref());
                }
            }
            command.envs(self.env.iter().map(|(k, v)| (k, v)));
            command
        }

        /// A page's commands as the test runs them.
        fn as_run(&self, commands: &str) -> String {
            let commands = commands
                .replace("cargo run --release -- ", "governance-sidecar ")
                .replace("target/release/governance-sidecar", "governance-sidecar");
            substitute(&commands, &self.addresses)
        }

        /// What was printed, as the page would write it.
        fn as_written(&self, printed: &str) -> Vec<String> {
            let back: Vec<(String, String)> = self.addresses.iter().map(|(w, a)| (a.clone(), w.clone())).collect();
            printed_lines(&substitute(printed, &back))
        }

        pub fn run(&mut self, step: &Step) {
            let lines: Vec<&str> = step.commands.lines().collect();
            let starts = |line: &&str| {
                line.starts_with("cargo run --release -- dev") || line.starts_with("governance-sidecar serve")
            };
            match lines.iter().position(starts) {
                Some(at) => self.start_server(step, &lines[..at].join("\n"), &lines[at..].join("\n")),
                None => self.run_commands(step),
            }
        }

        fn run_commands(&mut self, step: &Step) {
            let output = self.command(&self.as_run(&step.commands)).output().unwrap();
            let printed =
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            let actual = self.as_written(&printed);
            let expected = printed_lines(&step.expected);
            let differs = expected.len() != actual.len()
                || expected.iter().zip(&actual).any(|(pattern, line)| !line_matches(pattern, line));
            if differs {
                let first = expected.iter().zip(&actual).position(|(pattern, line)| !line_matches(pattern, line));
                panic!(
                    "{}:{}: the commands\n{}\nprinted\n{}\n\ninstead of\n{}\n\n(first difference at line {})",
                    self.page.display(),
                    step.line,
                    step.commands,
                    actual.join("\n"),
                    expected.join("\n"),
                    first.map_or(expected.len().min(actual.len()) + 1, |i| i + 1),
                );
            }
        }

        /// Runs `before`, then starts `server` (stopping the one running, as
        /// Ctrl-C would), and waits until it has printed the step's lines, in order.
        fn start_server(&mut self, step: &Step, before: &str, server: &str) {
            let mut printed = Vec::new();
            if !before.trim().is_empty() {
                let output = self.command(&self.as_run(before)).output().unwrap();
                printed.push(String::from_utf8_lossy(&output.stdout).into_owned());
                printed.push(String::from_utf8_lossy(&output.stderr).into_owned());
            }
            if let Some(mut running) = self.server.take() {
                running.stop();
            }
            let mut command = self.command(&format!("exec {}", self.as_run(server)));
            // Any free port; the page's address stands for it.
            command.env("GOVERNANCE_LISTEN", "127.0.0.1:0").stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = command.spawn().unwrap();
            let lines = Arc::new(Mutex::new(printed.iter().flat_map(|text| printed_lines(text)).collect::<Vec<_>>()));
            for stream in [
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                Box::new(child.stderr.take().unwrap()),
            ] {
                let lines = Arc::clone(&lines);
                std::thread::spawn(move || {
                    for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
                        lines.lock().unwrap().push(plain(&line).trim_end().to_owned());
                    }
                });
            }
            self.server = Some(Server { child });
            let expected = printed_lines(&step.expected);
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let printed = lines.lock().unwrap().clone();
                let serving = printed.iter().find(|line| line.contains("serving gRPC and HTTP"));
                if let Some(address) = serving.and_then(|line| line.split("address=").nth(1)) {
                    let address = address.split_whitespace().next().unwrap().to_owned();
                    self.address(SIDECAR, &address);
                    let printed = self.as_written(&printed.join("\n"));
                    let mut unmatched = expected.iter().peekable();
                    for line in &printed {
                        if unmatched.peek().is_some_and(|pattern| line_matches(pattern, line)) {
                            unmatched.next();
                        }
                    }
                    if unmatched.peek().is_none() {
                        return;
                    }
                }
                let exited = self.server.as_mut().unwrap().child.try_wait().unwrap();
                if exited.is_some() || Instant::now() > deadline {
                    panic!(
                        "{}:{}: the server\n{server}\nprinted\n{}\n\nwithout, in this order,\n{}",
                        self.page.display(),
                        step.line,
                        self.as_written(&printed.join("\n")).join("\n"),
                        expected.join("\n"),
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    #[test]
    fn an_ellipsis_stands_for_any_run_of_characters_within_a_line() {
        assert!(line_matches("abc", "abc"));
        assert!(!line_matches("abc", "abcd"));
        assert!(line_matches("a…c", "abbbc"));
        assert!(line_matches("a…c", "ac"));
        assert!(line_matches("…", "anything"));
        assert!(line_matches("\"id\": \"ctx_…\", …, \"key\": 1}", "\"id\": \"ctx_9f\", \"x\": 2, \"key\": 1}"));
        assert!(!line_matches("a…c…d", "abcd c"));
        assert!(!line_matches("ab…ba", "aba"));
        assert!(line_matches("… INFO …: serving", "2026-12-06T06:39:28Z  INFO gs::server: serving"));
    }

    #[test]
    fn substitutions_never_replace_what_another_put_in() {
        let pairs = [("A".to_owned(), "B".to_owned()), ("B".to_owned(), "C".to_owned())];
        assert_eq!(substitute("AB", &pairs), "BC");
    }
}

/// The toolchains' grpcurl, for the pages' sessions.
fn grpcurl_dir() -> PathBuf {
    toolchains().join("bin")
}

/// docs/quickstart.md, run as written against a fresh `dev`, in order:
/// every command prints what the page says it prints.
#[test]
fn the_quickstart_prints_what_it_says() {
    let page = repository().join("docs/quickstart.md");
    let steps = pages::steps(&page, true);
    assert!(steps.len() >= 20, "{} steps in docs/quickstart.md", steps.len());
    assert!(steps[0].commands.contains("cargo run --release -- dev"), "the quickstart starts dev first");
    // TMPDIR is the scratch directory, so dev's data is `$TMPDIR/governance-sidecar-dev` there.
    let scratch = common::postgres::scratch_dir("docs-quickstart");
    let binary = Path::new(common::dev::BINARY);
    let mut session = pages::Session::new(page, repository().to_owned(), &scratch, binary, &[grpcurl_dir()]);
    for step in &steps {
        session.run(step);
    }
}

/// docs/authoring.md, run as written: from an OpenAPI document, through
/// `policy generate` and `check`, to `dev` deciding with the generated bundle
/// and taking its mutation's scope from the generated operation map.
#[test]
fn the_authoring_page_prints_what_it_says() {
    let page = repository().join("docs/authoring.md");
    let steps = pages::steps(&page, true);
    assert!(steps.len() >= 7, "{} steps in docs/authoring.md", steps.len());
    let scratch = common::postgres::scratch_dir("docs-authoring");
    let binary = Path::new(common::dev::BINARY);
    let mut session = pages::Session::new(page, repository().to_owned(), &scratch, binary, &[]);
    for step in &steps {
        session.run(step);
    }
}

/// docs/replay.md, run as written: decisions recorded by `dev`, a candidate
/// bundle's tests failing, the replay naming the flip and failing its gate,
/// and the bundle in force reproducing every row.
#[test]
fn the_replay_page_prints_what_it_says() {
    let page = repository().join("docs/replay.md");
    let steps = pages::steps(&page, true);
    assert!(steps.len() >= 5, "{} steps in docs/replay.md", steps.len());
    let scratch = common::postgres::scratch_dir("docs-replay");
    let binary = Path::new(common::dev::BINARY);
    let mut session = pages::Session::new(page, repository().to_owned(), &scratch, binary, &[]);
    for step in &steps {
        session.run(step);
    }
}

/// docs/production.md, run as written against a private, empty PostgreSQL.
#[test]
fn the_production_recipe_prints_what_it_says() {
    let page = repository().join("docs/production.md");
    let steps = pages::steps(&page, true);
    assert!(steps.len() >= 8, "{} steps in docs/production.md", steps.len());
    let postgres = common::postgres::OwnedPostgres::start("docs-production-postgres");
    let scratch = common::postgres::scratch_dir("docs-production");
    let binary = Path::new(common::dev::BINARY);
    let mut session = pages::Session::new(page, repository().to_owned(), &scratch, binary, &[grpcurl_dir()]);
    session.address(pages::POSTGRES, &format!("127.0.0.1:{}", postgres.port));
    for step in &steps {
        session.run(step);
    }
}

/// The step of docs/clients.md that runs `program`, and what it prints.
fn clients_page_step(program: &str) -> pages::Step {
    let page = repository().join("docs/clients.md");
    let mut steps = pages::steps(&page, false).into_iter().filter(|step| step.commands.contains(program));
    let step = steps.next().unwrap_or_else(|| panic!("docs/clients.md runs no {program}"));
    assert!(steps.next().is_none(), "docs/clients.md runs {program} twice");
    step
}

/// Compares what an example printed with what docs/clients.md says it prints.
fn assert_prints_what_the_clients_page_says(program: &str, output: &Output) {
    common::assert_success(program, output);
    let step = clients_page_step(program);
    let printed = pages::printed_lines(&format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ));
    let expected = pages::printed_lines(&step.expected);
    assert!(
        printed.len() == expected.len() && expected.iter().zip(&printed).all(|(p, l)| pages::line_matches(p, l)),
        "docs/clients.md:{}: {program} printed\n{}\n\ninstead of\n{}",
        step.line,
        printed.join("\n"),
        expected.join("\n")
    );
}

/// examples/python/invoice.py, the program docs/clients.md and the README
/// show whole, against `dev` with the stubs its page tells how to generate.
#[test]
fn the_python_example_prints_what_the_clients_page_says() {
    let python = toolchains().join("python/bin/python");
    let stubs = common::postgres::scratch_dir("python-example-stubs");
    let generated = Command::new(&python)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(repository().join("proto"))
        .arg(format!("--python_out={}", stubs.display()))
        .arg(format!("--grpc_python_out={}", stubs.display()))
        .arg("governance/v1/governance.proto")
        .output()
        .unwrap();
    common::assert_success("grpc_tools.protoc", &generated);
    let sidecar = DevSidecar::start("python-example");
    let output = Command::new(&python)
        .arg("invoice.py")
        .arg(&sidecar.address)
        .current_dir(repository().join("examples/python"))
        .env("PYTHONPATH", &stubs)
        .output()
        .unwrap();
    assert_prints_what_the_clients_page_says("invoice.py", &output);
}

/// examples/node/invoice.js, the program docs/clients.md shows whole, against `dev`.
#[test]
fn the_node_example_prints_what_the_clients_page_says() {
    toolchains(); // installs the example's locked packages too
    let sidecar = DevSidecar::start("node-example");
    let output = Command::new("node")
        .arg("invoice.js")
        .arg(&sidecar.address)
        .current_dir(repository().join("examples/node"))
        .output()
        .unwrap();
    assert_prints_what_the_clients_page_says("invoice.js", &output);
}

/// `dev` prints the README's first lines, and each of its commands does what
/// its comment says: one write approved, one denied, and both rows of evidence.
#[test]
fn dev_prints_the_readmes_first_run_and_it_governs() {
    let mut sidecar = DevSidecar::start("interop-first-run");
    let printed = sidecar.first_run();
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    assert!(readme.contains(&printed.replace(&sidecar.address, "127.0.0.1:50051")), "README.md lacks:\n{printed}");

    let path = format!("{}:{}", toolchains().join("bin").display(), std::env::var("PATH").unwrap());
    let commands: Vec<&str> = printed.lines().filter(|line| !line.is_empty() && !line.starts_with('#')).collect();
    let expected: [&[&str]; 3] = [
        &[r#""decision": "DECISION_APPROVED""#, r#""mutationApplied": true"#, r#""rowsAffected": "1""#],
        &[r#""decision": "denied""#, r#""mutation_applied": false"#, r#""max_amount""#],
        &[
            r#""decision": "denied""#,
            r#""outcome": "not_applied""#,
            r#""decision": "approved""#,
            r#""outcome": "applied""#,
        ],
    ];
    assert_eq!(commands.len(), expected.len(), "{printed}");
    for (command, fragments) in commands.iter().zip(expected) {
        let output = Command::new("bash").args(["-c", command]).env("PATH", &path).output().unwrap();
        let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{command}\n{printed}");
        for fragment in fragments {
            assert!(printed.contains(fragment), "{command}\nprinted\n{printed}\nwithout {fragment}");
        }
    }
}

/// With the standard OTEL_* variables set, every call's span reaches an OTLP
/// collector (a Python one, from the opentelemetry-proto package), continuing
/// the caller's traceparent, with the PostgreSQL transaction as its child.
#[test]
fn spans_reach_an_otlp_collector_continuing_the_callers_trace() {
    use std::io::{BufRead as _, BufReader};
    let mut receiver = Command::new(toolchains().join("otlp/bin/python"))
        .arg(repository().join("tests/interop/otlp/receiver.py"))
        .args(["0", "--exit-on-stdin-eof"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _held_open = receiver.stdin.take();
    let mut lines = BufReader::new(receiver.stdout.take().unwrap()).lines();
    let port = lines.next().unwrap().unwrap();
    let (spans, received) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = spans.send(serde_json::from_str(&line).unwrap());
        }
    });

    let endpoint = format!("http://127.0.0.1:{port}");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "governance-sidecar-under-test"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let sidecar = DevSidecar::start_with_env("interop-otel", &[], &env);
    let (trace_id, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = runtime.block_on(async {
        use governance_sidecar::proto::governance_client::GovernanceClient;
        use governance_sidecar::proto::{ExecuteWithEvidenceRequest, MutationCall, execute_with_evidence_request::Body};
        let mut client = GovernanceClient::connect(format!("http://{}", sidecar.address)).await.unwrap();
        let body = r#"{"workspace_id": "ws_otel", "principal": {"type": "user", "id": "u"}, "object_type": "invoice", "operation": "create", "payload": {"amount": 250, "currency": "USD"}}"#;
        let mut request = tonic::Request::new(ExecuteWithEvidenceRequest {
            body: Some(Body::RequestJson(body.into())),
            idempotency_key: Some("otel-1".into()),
            mutation: Some(MutationCall { name: "create_invoice".into(), params: None }), answer_form: 0,
        });
        let traceparent = format!("00-{trace_id}-{caller_span}-01");
        request.metadata_mut().insert("traceparent", traceparent.parse().unwrap());
        client.execute_with_evidence(request).await.unwrap().into_inner()
    });
    let decision = answer.decision.unwrap();

    let (mut call, mut transaction) = (None, None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while call.is_none() || transaction.is_none() {
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        let span = received.recv_timeout(wait).expect("the call's spans did not reach the collector");
        if span["trace_id"] != trace_id {
            continue;
        }
        match span["name"].as_str().unwrap() {
            "ExecuteWithEvidence" => call = Some(span),
            "PostgreSQL transaction" => transaction = Some(span),
            _ => {}
        }
    }
    let (call, transaction) = (call.unwrap(), transaction.unwrap());
    assert_eq!(call["parent_span_id"], caller_span, "the call continues the caller's span: {call}");
    assert_eq!(call["service_name"], "governance-sidecar-under-test");
    assert_eq!(call["kind"], 2, "a server span: {call}");
    let attributes = &call["attributes"];
    assert_eq!(attributes["method"], "ExecuteWithEvidence");
    assert_eq!(attributes["ctx_id"], decision.ctx_id.as_str());
    assert_eq!(attributes["decision"], "approved");
    assert_eq!(attributes["trace_hash"], decision.trace_hash.as_str());
    assert_eq!(transaction["parent_span_id"], call["span_id"], "the transaction is the call's child: {transaction}");
    assert_eq!(transaction["attributes"]["db.system"], "postgresql");
    drop(sidecar);
    let _ = receiver.kill();
    let _ = receiver.wait();
}
