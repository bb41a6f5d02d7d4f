//! The documentation stays true to the repository: links lead somewhere,
//! docs/architecture.md names only files and code that exist, the settings
//! page gives every flag and default the binary has, and the examples the
//! pages show are the files the tests run. (The pages' sessions themselves are
//! run by `tests/interop.rs`.) No server, no database.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_governance-sidecar");

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// README.md, docs/*.md and deploy/README.md (when there is one).
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repository().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repository().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    let deploy = repository().join("deploy/README.md");
    if deploy.exists() {
        pages.push(deploy);
    }
    pages
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repository()).unwrap_or(path).display().to_string()
}

// ---- Markdown, as far as these checks need it ------------------------------

/// The page's lines outside fenced code blocks, with their numbers (from 1).
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence {
            lines.push((number + 1, line));
        }
    }
    lines
}

/// The fenced code blocks of a page: (language, body).
fn fenced_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(language) = line.trim_start().strip_prefix("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None => current = Some((language.trim().to_owned(), String::new())),
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    blocks
}

/// A line without its inline code spans (`…`), which hold no links.
fn without_code_spans(line: &str) -> String {
    let mut kept = String::new();
    for (i, part) in line.split('`').enumerate() {
        if i % 2 == 0 {
            kept.push_str(part);
        }
    }
    kept
}

/// The targets of a line's links: `[text](target)` and `[label]: target`.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code_spans(line);
    let mut targets = Vec::new();
    let mut rest = line.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let mut depth = 0;
        let end = after
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' if depth == 0 => return true,
                    ')' => depth -= 1,
                    _ => {}
                }
                false
            })
            .map_or(after.len(), |(i, _)| i);
        targets.push(after[..end].split_whitespace().next().unwrap_or("").to_owned());
        rest = &after[end..];
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with('[')
        && let Some((label, target)) = trimmed.split_once("]: ")
        && !label.contains(']')
    {
        targets.push(target.split_whitespace().next().unwrap_or("").to_owned());
    }
    targets
}

/// GitHub's anchor for a heading: its text as rendered (no code marks, a
/// link's text only), lower-cased, spaces to '-', punctuation other than '-'
/// and '_' dropped.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // [text](target) -> text
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|i| open + i) else { break };
        let Some(end) = rest[close..].find(')').map(|i| close + i) else { break };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    text.chars()
        .filter(|&c| c != '`' && c != '*')
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a page's headings, with GitHub's `-1`, `-2` for repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(line[hashes..].trim());
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.insert(if *count == 0 { base.clone() } else { format!("{base}-{count}") });
        *count += 1;
    }
    anchors
}

#[test]
fn slugs_follow_githubs_rules() {
    assert_eq!(
        slug("Policy bundles: the operator's policies, not the caller's"),
        "policy-bundles-the-operators-policies-not-the-callers"
    );
    assert_eq!(slug("Issue 18: evidence at scale, 2026-12-02"), "issue-18-evidence-at-scale-2026-12-02");
    assert_eq!(slug("Kernite's HTTP API (curl)"), "kernites-http-api-curl");
    assert_eq!(slug("The `dev` command and [its data](x.md)"), "the-dev-command-and-its-data");
    assert_eq!(slug("5. Serve"), "5-serve");
    assert_eq!(slug("governance_purge_before"), "governance_purge_before");
    assert_eq!(anchors("# A\n## A\n```\n# not a heading\n```\n## B\n"), ["a", "a-1", "b"].map(String::from).into());
    assert_eq!(link_targets("see [a](b.md#c) and `[no](link)` and [d](e(f).md \"title\")"), ["b.md#c", "e(f).md"]);
}

// ---- links --------------------------------------------------------------

/// Every relative link of README.md, docs/*.md and deploy/README.md points to
/// a file or directory that exists, and every `#anchor` to a heading of the
/// page it names.
#[test]
fn every_relative_link_points_to_a_file_and_a_heading_that_exist() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = read(&page);
        for (number, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
                let file = if path.is_empty() { page.clone() } else { page.parent().unwrap().join(path) };
                let place = format!("{}:{number}: {target}", relative(&page));
                if !file.exists() {
                    broken.push(format!("{place}: no such file"));
                } else if !anchor.is_empty()
                    && file.extension().is_some_and(|e| e == "md")
                    && !anchors(&read(&file)).contains(anchor)
                {
                    broken.push(format!("{place}: no such heading in {}", relative(&file)));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The README links to every page of docs/.
#[test]
fn the_readme_links_to_every_docs_page() {
    let readme = read(&repository().join("README.md"));
    let linked: BTreeSet<String> = prose_lines(&readme)
        .into_iter()
        .flat_map(|(_, line)| link_targets(line))
        .map(|target| target.split('#').next().unwrap().to_owned())
        .collect();
    let missing: Vec<String> = pages()
        .iter()
        .map(|page| relative(page))
        .filter(|page| page.starts_with("docs/") && !linked.contains(page))
        .collect();
    assert!(missing.is_empty(), "README.md does not link to {missing:?}");
}

/// A user's guide, not a manual: the reference is in docs/.
#[test]
fn the_readme_stays_short() {
    let lines = read(&repository().join("README.md")).lines().count();
    assert!(lines <= 300, "README.md has {lines} lines; move the reference to docs/");
}

// ---- docs/architecture.md names what exists ------------------------------------

/// Every file of the repository (outside target/, .git/ and node_modules/), relative.
fn repository_files() -> Vec<String> {
    fn walk(dir: &Path, files: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy();
            if path.is_dir() {
                if !matches!(name.as_ref(), "target" | ".git" | "node_modules") {
                    walk(&path, files);
                }
            } else {
                files.push(relative(&path));
            }
        }
    }
    let mut files = Vec::new();
    walk(repository(), &mut files);
    files
}

const TOP_LEVEL: &[&str] = &[
    "src/",
    "tests/",
    "migrations/",
    "benches/",
    "proto/",
    "deploy/",
    "docs/",
    "tools/",
    "fuzz/",
    "examples/",
    ".ci/",
];
const EXTENSIONS: &[&str] =
    &[".rs", ".sql", ".toml", ".yaml", ".yml", ".proto", ".sh", ".md", ".json", ".txt", ".py", ".js"];

/// Whether a code span names a file or directory of the repository.
fn is_path(span: &str) -> bool {
    !span.contains("::")
        && !span.is_empty()
        && span.chars().all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        && (TOP_LEVEL.iter().any(|top| span.starts_with(top)) || EXTENSIONS.iter().any(|ext| span.ends_with(ext)))
}

/// A path exists from the root or, written partly (`jsonb.rs`, `harness/load.rs`), as the end of one.
fn path_exists(span: &str, files: &[String]) -> bool {
    let span = span.trim_end_matches('/');
    repository().join(span).exists()
        || files.iter().any(|file| file.ends_with(&format!("/{span}")) || file.contains(&format!("/{span}/")))
}

/// Rust source with the insides of comments, strings and character literals
/// blanked out, so that braces and words there count for nothing.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars[..i].last().is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // r"…", r#"…"#
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.push('"');
            i = j + 1;
            while i < chars.len() {
                if chars[i] == '"' && (0..hashes).all(|k| chars.get(i + 1 + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
            out.push('"');
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // a character literal (a lifetime has no closing quote)
            out.push('\'');
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                out.push(' ');
                i += 1;
            }
            out.push('\'');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// A Rust source file of `src/`: its module path and its code.
#[derive(Clone)]
struct SourceFile {
    path: String,
    module: Vec<String>,
    code: String,
}

fn sources() -> Vec<SourceFile> {
    repository_files()
        .into_iter()
        .filter(|file| file.starts_with("src/") && file.ends_with(".rs"))
        .map(|path| {
            let mut module: Vec<String> =
                path.trim_start_matches("src/").trim_end_matches(".rs").split('/').map(String::from).collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                module.pop();
            }
            let code = code_only(&read(&repository().join(&path)));
            SourceFile { path, module, code }
        })
        .collect()
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The positions where `word` occurs as a whole word.
fn word_positions(text: &str, word: &str) -> Vec<usize> {
    text.match_indices(word)
        .filter(|&(at, _)| {
            !text[..at].chars().next_back().is_some_and(is_word)
                && !text[at + word.len()..].chars().next().is_some_and(is_word)
        })
        .map(|(at, _)| at)
        .collect()
}

/// Whether `code` defines `name` (a function, type, constant, static, module or macro).
fn defines(code: &str, name: &str) -> bool {
    ["fn", "struct", "enum", "trait", "type", "union", "const", "static", "mod", "macro_rules!"].iter().any(|keyword| {
        word_positions(code, name).into_iter().any(|at| {
            let before = code[..at].trim_end();
            before.ends_with(keyword)
                && !before[..before.len() - keyword.len()].chars().next_back().is_some_and(is_word)
        })
    })
}

/// The name of the type an `impl`, `trait`, `enum` or `struct` header is about:
/// `impl<T> Trait for a::Type<T> where …` is about `Type`.
fn self_type(keyword: &str, header: &str) -> String {
    let mut rest = header[keyword.len()..].trim_start();
    if keyword == "impl" {
        if rest.starts_with('<') {
            let mut depth = 0;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '<' => depth += 1,
                        '>' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(rest.len(), |(i, _)| i + 1);
            rest = rest[end..].trim_start();
        }
        if let Some((_, of)) = rest.rsplit_once(" for ") {
            rest = of.trim_start();
        }
    }
    let rest = rest.split(" where ").next().unwrap().trim_start_matches(['&', ' ']);
    let path = rest.split(|c: char| c == '<' || c == '(' || c.is_whitespace()).next().unwrap();
    path.rsplit("::").next().unwrap().to_owned()
}

/// The bodies of the `impl` blocks of `type_name` in `code`, and of its
/// `trait`, `enum` or `struct` definition.
fn bodies_of(code: &str, type_name: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    for keyword in ["impl", "trait", "enum", "struct"] {
        for at in word_positions(code, keyword) {
            let Some(open) = code[at..].find(['{', ';']).map(|i| at + i) else { continue };
            if &code[open..=open] == ";" || self_type(keyword, &code[at..open]) != type_name {
                continue;
            }
            let mut depth = 0;
            let end = code[open..]
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(code.len(), |(i, _)| open + i);
            bodies.push(code[open..end].to_owned());
        }
    }
    bodies
}

/// Whether the code names a `module::item`, `Type::method`, `file.rs::item` or
/// `module::Type::method` that exists under `src/`; `Err` says what is missing.
fn resolve(span: &str, sources: &[SourceFile], proto: &str) -> Result<(), String> {
    let span = span.trim_end_matches("()");
    let span = span.strip_prefix("crate::").or_else(|| span.strip_prefix("governance_sidecar::")).unwrap_or(span);
    let segments: Vec<&str> = span.split("::").collect();
    // `write.rs::try_execute`: the files of that name
    let (mut files, rest): (Vec<&SourceFile>, &[&str]) = if segments[0].ends_with(".rs") {
        let named: Vec<&SourceFile> =
            sources.iter().filter(|file| file.path.ends_with(&format!("/{}", segments[0]))).collect();
        if named.is_empty() {
            return Err(format!("no file {}", segments[0]));
        }
        (named, &segments[1..])
    } else {
        (sources.iter().collect(), &segments[..])
    };
    let modules: Vec<&str> = rest.iter().take_while(|s| s.starts_with(|c: char| c.is_lowercase())).copied().collect();
    if !modules.is_empty() {
        // The whole path may be a module (`log::jsonb`).
        if modules.len() == rest.len()
            && files
                .iter()
                .any(|file| file.module.ends_with(&modules.iter().map(|m| m.to_string()).collect::<Vec<_>>()))
        {
            return Ok(());
        }
        // Otherwise its last segment is an item of the module the others name.
        let (module, item) =
            if modules.len() == rest.len() { modules.split_at(modules.len() - 1) } else { (&modules[..], &[][..]) };
        let module: Vec<String> = module.iter().map(|m| m.to_string()).collect();
        if !module.is_empty() {
            files.retain(|file| file.module.ends_with(&module));
            if files.is_empty() {
                return Err(format!("no module {}", module.join("::")));
            }
        }
        if let Some(item) = item.first() {
            return if files.iter().any(|file| defines(&file.code, item)) {
                Ok(())
            } else {
                Err(format!("no {item} in {}", files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>().join(", ")))
            };
        }
    }
    let Some((type_name, members)) = rest[modules.len()..].split_first() else { return Ok(()) };
    // A type a macro defines (`words! { RecordedDecision … }`) shows by its impls.
    let defined_in_src = files.iter().any(|file| defines(&file.code, type_name))
        || sources.iter().any(|file| !bodies_of(&file.code, type_name).is_empty());
    let defined_in_proto = ["message", "enum", "service"].iter().any(|k| proto.contains(&format!("{k} {type_name} ")));
    if !defined_in_src && !defined_in_proto {
        return Err(format!("no type {type_name}"));
    }
    let Some(member) = members.first() else { return Ok(()) };
    let found = sources.iter().any(|file| {
        bodies_of(&file.code, type_name).iter().any(|body| {
            if member.starts_with(|c: char| c.is_uppercase()) {
                !word_positions(body, member).is_empty()
            } else {
                defines(body, member)
            }
        })
    });
    if found || (defined_in_proto && !defined_in_src) { Ok(()) } else { Err(format!("no {member} in {type_name}")) }
}

/// Crates the code uses that are not ours: `tokio::spawn` names no code of this repository.
fn external_crates() -> BTreeSet<String> {
    let manifest = read(&repository().join("Cargo.toml"));
    let mut crates: BTreeSet<String> = ["std", "core", "alloc"].map(String::from).into();
    let mut in_dependencies = false;
    for line in manifest.lines() {
        if line.starts_with('[') {
            in_dependencies = line.contains("dependencies");
        } else if in_dependencies && let Some((name, _)) = line.split_once('=') {
            crates.insert(name.trim().replace('-', "_"));
        }
    }
    crates
}

/// Whether a code span is a path of Rust code (`a::b`), not SQL (`id::text`) or prose.
fn is_code_path(span: &str) -> bool {
    const SQL_TYPES: &[&str] = &[
        "text",
        "bigint",
        "int8",
        "jsonb",
        "timestamptz",
        "int8range",
        "regclass",
        "bytea",
        "uuid",
        "numeric",
        "integer",
    ];
    span.contains("::")
        && span.trim_end_matches("()").split("::").all(|s| !s.is_empty() && s.chars().all(|c| is_word(c) || c == '.'))
        && !SQL_TYPES.contains(&span.rsplit("::").next().unwrap())
}

/// Whether a code span is a type's name: `GovernedWrite`, not `Decision` or `SERVING`.
fn is_type_name(span: &str) -> bool {
    span.starts_with(|c: char| c.is_ascii_uppercase())
        && span.chars().all(|c| c.is_ascii_alphanumeric())
        && span.chars().any(|c| c.is_ascii_lowercase())
        && span.chars().filter(char::is_ascii_uppercase).count() >= 2
}

/// Every file path docs/architecture.md names in backticks exists, and every
/// `module::function`, `Type::method` or type name it names is defined under
/// `src/` (a message of the proto counts for a type). A name followed at once
/// by a source file (`` `Type::method` (`src/a/b.rs`) `` or
/// `` (`Type::method`, `src/a/b.rs`) ``) must be defined in that file (a
/// method in an `impl` of its type there).
#[test]
fn the_architecture_page_names_only_files_and_code_that_exist() {
    let page = repository().join("docs/architecture.md");
    let text = read(&page);
    let files = repository_files();
    let sources = sources();
    let proto = read(&repository().join("proto/governance/v1/governance.proto"));
    let external = external_crates();
    let mut missing = BTreeSet::new();
    let mut checked = 0;
    for (number, line) in prose_lines(&text) {
        // text, span, text, span, …: a span's place is the span after it, with only `, (` between
        let parts: Vec<&str> = line.split('`').collect();
        for k in (1..parts.len()).step_by(2) {
            let span = parts[k];
            let is_code = if is_path(span) {
                checked += 1;
                if !path_exists(span, &files) {
                    missing.insert(format!("docs/architecture.md:{number}: `{span}`: no such file"));
                }
                continue;
            } else if is_code_path(span) {
                !external.contains(span.split("::").next().unwrap())
            } else {
                is_type_name(span)
            };
            if !is_code {
                continue;
            }
            checked += 1;
            let place = parts
                .get(k + 2)
                .filter(|next| parts[k + 1].trim_matches([' ', ',', '(']).is_empty() && next.ends_with(".rs"))
                .filter(|next| is_path(next) && path_exists(next, &files));
            let problem = match place {
                Some(place) => {
                    let there: Vec<SourceFile> = sources
                        .iter()
                        .filter(|file| file.path == **place || file.path.ends_with(&format!("/{place}")))
                        .cloned()
                        .collect();
                    resolve(span, &sources, &proto)
                        .err()
                        .or_else(|| resolve(span, &there, &proto).err().map(|_| format!("not in {place}")))
                }
                None => resolve(span, &sources, &proto).err(),
            };
            if let Some(problem) = problem {
                missing.insert(format!("docs/architecture.md:{number}: `{span}`: {problem}"));
            }
        }
    }
    assert!(checked >= 20, "only {checked} names checked in docs/architecture.md");
    assert!(
        missing.is_empty(),
        "docs/architecture.md names what does not exist:\n{}",
        missing.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn code_names_resolve_as_rust_would_find_them() {
    let sources = sources();
    let proto = read(&repository().join("proto/governance/v1/governance.proto"));
    for name in ["GovernanceApi", "EvaluateRequest"] {
        assert_eq!(resolve(name, &sources, &proto), Ok(()), "{name}");
    }
    for name in ["NoSuchType", "NoSuchModule::thing", "no_such_module::thing", "main.rs::no_such_function"] {
        assert!(resolve(name, &sources, &proto).is_err(), "{name} resolved");
    }
    assert!(resolve("main.rs::verify_log", &sources, &proto).is_ok());
    assert_eq!(self_type("impl", "impl<T: Into<u8>> std::fmt::Display for a::Wrapper<T> where T: Copy "), "Wrapper");
    assert_eq!(self_type("impl", "impl GovernanceApi "), "GovernanceApi");
    assert_eq!(self_type("enum", "enum Mode "), "Mode");
    assert_eq!(
        code_only("let s = \"{\"; // }\nlet c = '{'; fn f<'a>() {}"),
        "let s = \" \";     \nlet c = ' '; fn f<'a>() {}"
    );
    assert!(is_path("src/api/http.rs") && is_path("jsonb.rs") && !is_path("application/openmetrics-text"));
    assert!(is_code_path("Governed::into_proto") && is_code_path("write.rs::try_execute") && !is_code_path("id::text"));
}

// ---- the settings ----------------------------------------------------------

/// The rows of the first table under `## {section}` in docs/configuration.md.
fn configuration_rows(section: &str) -> Vec<String> {
    let text = read(&repository().join("docs/configuration.md"));
    let section = text.split(&format!("\n## {section}\n")).nth(1).unwrap_or_else(|| panic!("no section {section}"));
    let section = section.split("\n## ").next().unwrap();
    section.lines().filter(|line| line.starts_with("| `")).map(String::from).collect()
}

/// Each `--flag` a command's help lists has a row in the section's table,
/// whose second column gives the help's default.
fn assert_rows_for_every_flag(command: &[&str], section: &str, skip: &[&str]) {
    let help = Command::new(BINARY).args(command).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let rows = configuration_rows(section);
    let mut checked = 0;
    for option in help.split("\n      --").skip(1) {
        let name = option.split([' ', '\n', '<', '[']).next().unwrap();
        if skip.contains(&name) {
            continue;
        }
        let flag = format!("`--{name}`");
        let row = rows
            .iter()
            .find(|row| row.split('|').nth(1).is_some_and(|cell| cell.contains(&flag)))
            .unwrap_or_else(|| panic!("docs/configuration.md, {section}: no row for {flag}"));
        if let Some(default) = option.split("[default: ").nth(1).and_then(|rest| rest.split(']').next()) {
            let cell = row.split('|').nth(2).unwrap();
            assert!(
                cell.contains(default),
                "{flag}: the help's default is {default:?}, docs/configuration.md says {cell:?}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} flags in the help of {command:?}");
}

#[test]
fn the_configuration_page_gives_every_flag_and_default_the_help_shows() {
    assert_rows_for_every_flag(&["serve"], "serve", &[]);
    // dev's own flags; the rest are serve's
    let serve_help =
        String::from_utf8(Command::new(BINARY).args(["serve", "--help"]).output().unwrap().stdout).unwrap();
    let serve_flags: Vec<&str> =
        serve_help.split("\n      --").skip(1).map(|o| o.split([' ', '\n', '<', '[']).next().unwrap()).collect();
    assert_rows_for_every_flag(&["dev"], "dev", &serve_flags);
    assert_rows_for_every_flag(&["policy", "test"], "policy test", &[]);
    let database_flags = ["database-url", "database-url-file", "database-ca-file"];
    assert_rows_for_every_flag(&["replay"], "replay", &database_flags);
}

#[test]
fn the_configuration_page_lists_every_command() {
    let help = String::from_utf8(Command::new(BINARY).arg("--help").output().unwrap().stdout).unwrap();
    let commands = help.split("Commands:\n").nth(1).unwrap().split("\n\n").next().unwrap();
    let rows = configuration_rows("Commands");
    for command in commands.lines().filter_map(|line| line.split_whitespace().next()).filter(|&c| c != "help") {
        let name = format!("`governance-sidecar {command}`");
        assert!(rows.iter().any(|row| row.contains(&name)), "docs/configuration.md, Commands: no row for {name}");
    }
}

// ---- what the pages show is what the tests run ------------------------------

fn assert_shown_whole(page: &str, language: &str, file: &str) {
    let blocks = fenced_blocks(&read(&repository().join(page)));
    let source = read(&repository().join(file));
    assert!(
        blocks.iter().any(|(lang, body)| lang == language && *body == source),
        "{page} does not show {file} whole, as it is, in a ```{language} block"
    );
}

/// The client examples the pages show are the files `tests/interop.rs` runs,
/// and the invoice example's registry and bundle are shown as `dev` uses them.
#[test]
fn the_pages_show_the_files_the_tests_run() {
    assert_shown_whole("README.md", "python", "examples/python/invoice.py");
    assert_shown_whole("docs/clients.md", "python", "examples/python/invoice.py");
    assert_shown_whole("docs/clients.md", "js", "examples/node/invoice.js");
    assert_shown_whole("docs/evidence.md", "toml", "deploy/examples/invoice/mutations.toml");
    assert_shown_whole("docs/policy-bundles.md", "json", "deploy/examples/invoice/policy-bundle.json");
    assert_shown_whole("docs/policy-tests.md", "json", "deploy/examples/invoice/policy.tests.json");
}

/// The examples' pinned packages are those `tests/interop/setup.sh` installs to run them.
#[test]
fn the_examples_pin_what_the_tests_install() {
    let tested = read(&repository().join("tests/interop/python/requirements.txt"));
    for pin in read(&repository().join("examples/python/requirements.txt")).lines().filter(|l| l.contains("==")) {
        assert!(tested.lines().any(|line| line == pin), "examples/python pins {pin}; tests/interop/python does not");
    }
    let dependencies = |path: &str| -> serde_json::Map<String, serde_json::Value> {
        let manifest: serde_json::Value = serde_json::from_str(&read(&repository().join(path))).unwrap();
        manifest["dependencies"].as_object().unwrap().clone()
    };
    let tested = dependencies("tests/interop/node/package.json");
    for (name, version) in dependencies("examples/node/package.json") {
        assert_eq!(
            tested.get(&name),
            Some(&version),
            "examples/node pins {name} {version}; tests/interop/node does not"
        );
    }
}

/// The commands of the `sh` blocks of a page, continuation lines joined.
fn shell_commands(page: &str) -> Vec<String> {
    let mut commands = Vec::new();
    for (language, body) in fenced_blocks(&read(&repository().join(page))) {
        if language != "sh" {
            continue;
        }
        let mut current = String::new();
        for line in body.lines() {
            current.push_str(line.trim_end_matches('\\').trim_end());
            if line.ends_with('\\') {
                current.push(' ');
            } else {
                commands.push(std::mem::take(&mut current).split_whitespace().collect::<Vec<_>>().join(" "));
            }
        }
    }
    commands
}

/// The grpcurl and curl commands the README and docs/clients.md show are
/// commands of docs/quickstart.md, whose outputs `tests/interop.rs` checks.
#[test]
fn the_readme_and_clients_page_show_commands_the_quickstart_runs() {
    let mut quickstart = shell_commands("docs/quickstart.md");
    // The production recipe is the session with a callers file and a token.
    quickstart.extend(shell_commands("docs/production.md"));
    for page in ["README.md", "docs/clients.md"] {
        let shown: Vec<String> =
            shell_commands(page).into_iter().filter(|c| c.starts_with("grpcurl ") || c.starts_with("curl ")).collect();
        assert!(!shown.is_empty(), "{page} shows no grpcurl or curl command");
        for command in shown {
            assert!(
                quickstart.contains(&command),
                "{page} shows a command docs/quickstart.md (or docs/production.md) does not run:\n{command}"
            );
        }
    }
}
