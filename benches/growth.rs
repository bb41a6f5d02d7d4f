//! Evidence at scale (docs/scale.md; docs/performance.md):
//! what ten million rows of evidence do to the writes and the audit reads.
//!
//! On a private durable PostgreSQL (default settings but `max_wal_size`), in
//! the layout `BENCH_LAYOUT` (`reference`, the default, or `partitioned`),
//! for each row count of `BENCH_GROWTH_ROWS` (default `0,1000000,10000000`):
//!
//! 1. the evidence table is filled to that count with COPY: realistic rows
//!    (a quarter denied, ~2 KiB response JSON, random ctx_ids, trace hashes
//!    and idempotency keys, 200 workspaces, `created_at` spread over the last
//!    twelve months), and a result row for each applied one;
//! 2. ExecuteWithEvidence at 8 callers for `BENCH_SECONDS`, `BENCH_REPEAT`
//!    times (3), each load starting right after a checkpoint: median
//!    throughput and p99; PostgreSQL's CPU, WAL and full-page images, and
//!    blocks read from outside shared_buffers, per call; with the invoice
//!    example's mutation;
//! 3. GetEvidence by id and by ctx_id, and ListEvidence pages of 50 (a
//!    workspace's first page, and a page deep in it), one caller, p50/p99;
//! 4. every table's and index's size, and the disk per row against the row's
//!    raw size (its columns as JSON text).
//!
//! With the partitioned layout, last: the same load again while `maintain
//! --retention-months 11` drops the oldest month, with the longest call
//! (`BENCH_DROPS` months, one at a time, each under its own load).
//! With the reference layout and `BENCH_CONVERT` set, last: how long
//! `migrate --layout partitioned` takes to convert it.
//!
//! `BENCH_SETUP_SQL` runs after the migration, for experiments (e.g. dropping
//! an index to see what it costs).
//!
//! `cargo bench --bench growth`; it needs ~25 GB of free disk for 10 M rows.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governance_sidecar::proto::governance_client::GovernanceClient;
use governance_sidecar::proto::{GetEvidenceRequest, ListEvidenceRequest, get_evidence_request};
use tokio_postgres::NoTls;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod harness;

use harness::load::*;
use harness::*;

const WORKSPACES: u64 = 200;
const MONTHS: i64 = 12;
/// Rows per COPY statement: each is its own transaction.
const COPY_CHUNK: u64 = 250_000;

fn main() {
    let layout = std::env::var("BENCH_LAYOUT").unwrap_or_else(|_| "reference".into());
    let stages: Vec<u64> = std::env::var("BENCH_GROWTH_ROWS")
        .unwrap_or_else(|_| "0,1000000,10000000".into())
        .split(',')
        .map(|n| n.trim().parse().expect("BENCH_GROWTH_ROWS: row counts"))
        .collect();
    // BENCH_SHARED_BUFFERS (e.g. `2GB`): PostgreSQL's buffer cache; unset, the default 128 MB.
    let settings: &'static [&'static str] = match std::env::var("BENCH_SHARED_BUFFERS") {
        Ok(size) => Box::leak(Box::new([&*Box::leak(format!("shared_buffers={size}").into_boxed_str())])),
        Err(_) => &[],
    };
    let (admin_url, dir) = start_postgres_with(settings);
    // COPY writes gigabytes: at the default 1 GB, checkpoints would come every few seconds.
    psql(&admin_url, "ALTER SYSTEM SET max_wal_size = '4GB'");
    psql(&admin_url, "SELECT pg_reload_conf()");
    let url = database(&admin_url, &layout);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut report = vec![
        format!("layout: {layout}"),
        "| rows | EWE calls/s (8 callers) | EWE p99 | PG CPU/call | WAL/call (full pages) | blocks read/call | \
         GetEvidence id p50/p99 | GetEvidence ctx_id p50/p99 | ListEvidence first page p50/p99 | deep page p50/p99 | \
         evidence on disk | per row (raw) |"
            .into(),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |".into(),
    ];
    let mut filled = 0;
    for (stage, &rows) in stages.iter().enumerate() {
        if rows > filled {
            let started = Instant::now();
            runtime.block_on(fill(&url, filled, rows - filled));
            if layout == "partitioned" {
                // The steady state keeps one key lifetime of claims; COPY claimed every row's key.
                maintain(&url, &[]);
            }
            psql(&url, "VACUUM ANALYZE");
            eprintln!("filled to {rows} rows in {:.0} s", started.elapsed().as_secs_f64());
            filled = rows;
        }
        eprintln!("measuring at {rows} rows");
        let write = measure_writes(&runtime, &url, &dir, &format!("stage{stage}"), None);
        // The load's own rows counted too: reads are measured on fresh statistics, as autovacuum keeps them.
        psql(&url, "ANALYZE");
        let reads = runtime.block_on(measure_reads(&url, write.port));
        let (bytes, raw, sizes) = sizes(&url);
        let per_row = bytes as f64 / (rows + write.ok).max(1) as f64;
        report.push(format!(
            "| {rows} | {:.0} | {:.1} ms | {:.0} µs | {:.0} B ({:.2}) | {:.2} | {} | {} | {} | {} | {:.2} GB | \
             {per_row:.0} B ({raw:.0} B) |",
            write.rate,
            write.p99_ms,
            write.postgres_us,
            write.wal_bytes,
            write.full_pages,
            write.blocks_read,
            reads[0],
            reads[1],
            reads[2],
            reads[3],
            bytes as f64 / 1e9
        ));
        eprintln!("{}\n{sizes}", report.last().unwrap());
        report.push(format!("<!-- sizes at {rows} rows: {} -->", sizes.replace('\n', "; ")));
    }
    if layout == "partitioned" {
        // `BENCH_DROPS` (default 1) months are dropped, oldest first, each under its own load.
        let drops: u32 = std::env::var("BENCH_DROPS").map_or(1, |n| n.parse().unwrap());
        let quiet = measure_writes(&runtime, &url, &dir, "quiet", None);
        for drop in 0..drops {
            let dropping =
                measure_writes(&runtime, &url, &dir, &format!("dropping{drop}"), Some(MONTHS as u32 - 1 - drop));
            report.push(format!(
                "\nlongest call, 8 callers: {:.1} ms without a drop, {:.1} ms while the oldest month was dropped \
                 (p99 {:.1} / {:.1} ms; {:.0} / {:.0} calls/s; the drop took {:.2} s)",
                quiet.max_ms,
                dropping.max_ms,
                quiet.p99_ms,
                dropping.p99_ms,
                quiet.rate,
                dropping.rate,
                dropping.drop_s
            ));
        }
    }
    if layout == "reference" && std::env::var_os("BENCH_CONVERT").is_some() {
        let started = Instant::now();
        let status = Command::new(SIDECAR)
            .args(["migrate", "--database-url", &url, "--layout", "partitioned"])
            .env("RUST_LOG", "warn")
            .status()
            .unwrap();
        assert!(status.success());
        report.push(format!(
            "\n`migrate --layout partitioned` of {filled} rows (and the load's): {:.0} s",
            started.elapsed().as_secs_f64()
        ));
    }
    println!("\n{}", report.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A database of its own on the bench's PostgreSQL, migrated to `layout`, with the invoice table.
fn database(admin_url: &str, layout: &str) -> String {
    psql(admin_url, "CREATE DATABASE growth");
    let url = format!("{}/growth", admin_url.rsplit_once('/').unwrap().0);
    let status = Command::new(SIDECAR)
        .args(["migrate", "--database-url", &url, "--layout", layout])
        .env("RUST_LOG", "warn")
        .status()
        .unwrap();
    assert!(status.success());
    psql(&url, &std::fs::read_to_string(format!("{ROOT}/deploy/examples/invoice/schema.sql")).unwrap());
    if let Ok(sql) = std::env::var("BENCH_SETUP_SQL") {
        psql(&url, &sql);
    }
    url
}

/// One pass of `governance-sidecar maintain` with `flags`.
fn maintain(url: &str, flags: &[&str]) {
    let status = Command::new(SIDECAR)
        .args(["maintain", "--database-url", url])
        .args(flags)
        .env("RUST_LOG", "info")
        .status()
        .unwrap();
    assert!(status.success());
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// splitmix64: cheap, reproducible randomness for the rows.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn hex(&mut self, bytes: usize) -> String {
        (0..bytes.div_ceil(8)).map(|_| format!("{:016x}", self.next())).collect::<String>()[..bytes * 2].to_owned()
    }
}

const WORDS: [&str; 32] = [
    "invoice",
    "approved",
    "policy",
    "finance",
    "quarterly",
    "billing",
    "customer",
    "amount",
    "currency",
    "limit",
    "review",
    "threshold",
    "principal",
    "workspace",
    "required",
    "field",
    "missing",
    "allowed",
    "denied",
    "rule",
    "scope",
    "consulting",
    "services",
    "monthly",
    "credit",
    "refund",
    "payment",
    "ledger",
    "account",
    "region",
    "team",
    "owner",
];

/// One evidence row as a line of COPY text: ~2 KiB of response JSON, the rest as the sidecar writes it.
fn evidence_line(random: &mut Random, created_at: &str, out: &mut String) {
    use std::fmt::Write as _;
    let denied = random.next().is_multiple_of(4);
    let workspace = random.next() % WORKSPACES;
    let ctx_id = format!("ctx_{}", random.hex(16));
    let trace_hash = format!("sha256:{}", random.hex(32));
    let (decision, outcome, codes) = if denied {
        ("denied", "not_applied", r#"["amount_over_limit"]"#)
    } else {
        ("approved", "applied", r#"["policy_allow"]"#)
    };
    let mut reasons = String::new();
    for i in 0..12 {
        let words: Vec<&str> = (0..8).map(|_| WORDS[(random.next() % 32) as usize]).collect();
        let _ = write!(
            reasons,
            r#"{}{{"code": "rule_{i}", "message": "{}", "amount": {}}}"#,
            if i == 0 { "" } else { ", " },
            words.join(" "),
            random.next() % 100_000
        );
    }
    let response = format!(
        r#"{{"ctx_id": "{ctx_id}", "data": {{"decision": "{decision}", "idempotency_key": null, "policy": {{"policy_key": "invoice_create", "policy_version": 3}}, "reason_codes": {codes}, "reasons": [{reasons}], "trace_hash": "{trace_hash}"}}, "message": "Governance {decision} the request."}}"#
    );
    let key = if random.next().is_multiple_of(10) { r"\N".to_owned() } else { random.hex(16) };
    let _ = writeln!(
        out,
        "{created_at}\tws_{workspace}\tusr_{}\tinvoice\tcreate\t{decision}\t{codes}\t{ctx_id}\t{trace_hash}\t{key}\t\
         {response}\t{outcome}\tcreate_invoice\tsha256:{}\tenforce\t[]",
        random.next() % 5000,
        random.hex(32),
    );
}

/// Adds `rows` evidence rows (and a result row for each applied one) with COPY,
/// their `created_at` spread evenly over the last twelve months.
async fn fill(url: &str, already: u64, rows: u64) {
    let client = connect(url).await;
    let before: i64 = client.query_one("SELECT coalesce(max(id), 0) FROM governance_events", &[]).await.unwrap().get(0);
    let start: i64 = client
        .query_one(&format!("SELECT extract(epoch FROM now() - interval '{MONTHS} months')::bigint"), &[])
        .await
        .unwrap()
        .get(0);
    let span = MONTHS * 30 * 86_400 - 86_400;
    // The partitioned layout has months from its migration on: the past year's are made here.
    let partitioned: bool = client
        .query_one("SELECT to_regproc('governance_create_month_partitions') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    if partitioned {
        let from = format!("SELECT governance_create_month_partitions(now() - interval '{MONTHS} months', now())");
        client.execute(&from, &[]).await.unwrap();
    }
    let mut random = Random(already + 1);
    let mut written = 0;
    while written < rows {
        let chunk = COPY_CHUNK.min(rows - written);
        // psql's COPY FROM STDIN: the rows stream from this process as the server reads them.
        let mut copy = Command::new(pg_bin("psql"))
            .args([url, "-qX", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(
                "COPY governance_events (created_at, workspace_id, principal_id, object_type, operation, decision, \
                 reason_codes, ctx_id, trace_hash, idempotency_key, response_json, outcome, mutation_name, \
                 request_fingerprint, mode, redacted_paths) FROM STDIN",
            )
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = std::io::BufWriter::with_capacity(1 << 20, copy.stdin.take().unwrap());
        let mut line = String::with_capacity(4096);
        for i in 0..chunk {
            let at = start + ((written + i) as i128 * span as i128 / rows as i128) as i64;
            line.clear();
            evidence_line(&mut random, &epoch_text(at), &mut line);
            std::io::Write::write_all(&mut stdin, line.as_bytes()).unwrap();
        }
        drop(stdin);
        assert!(copy.wait().unwrap().success(), "COPY failed");
        written += chunk;
        eprintln!("  {written} of {rows}");
    }
    let with_created_at = client
        .query_one("SELECT count(*) > 0 FROM information_schema.columns WHERE table_name = 'governance_mutation_results' AND column_name = 'created_at'", &[])
        .await
        .unwrap()
        .get::<_, bool>(0);
    let (columns, values) = if with_created_at { (", created_at", ", created_at") } else { ("", "") };
    client
        .execute(
            &format!(
                "INSERT INTO governance_mutation_results (evidence_id, rows_affected, returning_rows, workspace_id{columns}) \
                 SELECT id, 1, jsonb_build_array(jsonb_build_object('id', id, 'amount', 250)), workspace_id{values} \
                 FROM governance_events WHERE id > $1 AND outcome = 'applied'"
            ),
            &[&before],
        )
        .await
        .unwrap();
}

/// Seconds since the epoch as a timestamptz COPY reads.
fn epoch_text(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}+00", in_day / 3600, in_day % 3600 / 60, in_day % 60)
}

struct Writes {
    port: u16,
    ok: u64,
    rate: f64,
    p99_ms: f64,
    max_ms: f64,
    postgres_us: f64,
    /// Per call: WAL bytes, full-page images among them, and blocks PostgreSQL
    /// had to read (not in shared_buffers; from the OS cache or the disk).
    wal_bytes: f64,
    full_pages: f64,
    blocks_read: f64,
    drop_s: f64,
    _sidecar: Process,
}

/// ExecuteWithEvidence at 8 callers, after one untimed load that opens the
/// pool and prepares the statements: `BENCH_REPEAT` loads (default 3), each
/// right after a checkpoint; the median rate and p99, the longest call, and
/// the mean cost per call. With `drop_older_than` months, one load, a third
/// of the way into which `maintain` drops the months older than that.
fn measure_writes(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    dir: &std::path::Path,
    label: &str,
    drop_older_than: Option<u32>,
) -> Writes {
    let mutations = format!("{ROOT}/deploy/examples/invoice/mutations.toml");
    let port = free_port();
    let sidecar = spawn_sidecar(port, &["--database-url", url, "--mutations", &mutations, "--pool-size", "32"]);
    let text = Arc::new(request_text("approved"));
    let warm = runtime.block_on(load(port, 8, 8, invoice_call(text.clone(), format!("growth-{label}-warm")), || {}));
    assert_eq!(warm.failed, 0, "calls failed");
    let repeats =
        if drop_older_than.is_some() { 1 } else { std::env::var("BENCH_REPEAT").map_or(3, |n| n.parse().unwrap()) };
    let counters = || -> [f64; 3] {
        let output = Command::new(pg_bin("psql"))
            .args([url, "-qtAX", "-F", " ", "-c"])
            .arg("SELECT w.wal_bytes, w.wal_fpi, (SELECT sum(blks_read) FROM pg_stat_database) FROM pg_stat_wal w")
            .output()
            .unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        let mut values = text.split_whitespace().map(|v| v.parse::<f64>().unwrap());
        [values.next().unwrap(), values.next().unwrap(), values.next().unwrap()]
    };
    let (mut rates, mut p99s, mut max_ms, mut ok) = (Vec::new(), Vec::new(), 0.0_f64, 0);
    let (mut postgres, mut totals, mut drop_s) = (Duration::ZERO, [0.0; 3], 0.0);
    for repeat in 0..repeats {
        let dropper = drop_older_than.map(|months| {
            let url = url.to_owned();
            std::thread::spawn(move || {
                std::thread::sleep(seconds() / 3);
                let started = Instant::now();
                maintain(&url, &["--retention-months", &months.to_string()]);
                started.elapsed()
            })
        });
        // Every load starts right after a checkpoint: the first change to a page
        // after one writes the whole page to the WAL, so where a load falls in
        // the checkpoint cycle would otherwise decide its cost.
        psql(url, "CHECKPOINT");
        let (cpu_before, counted) = (postgres_cpu(dir), counters());
        let call = invoice_call(text.clone(), format!("growth-{label}-{repeat}"));
        let measured = runtime.block_on(load(port, 8, 8, call, || {}));
        postgres += postgres_cpu(dir) - cpu_before;
        let after = counters();
        (0..3).for_each(|i| totals[i] += after[i] - counted[i]);
        assert_eq!(measured.failed, 0, "calls failed");
        drop_s = dropper.map_or(drop_s, |d| d.join().unwrap().as_secs_f64());
        rates.push(measured.rate());
        p99s.push(measured.p(0.99) / 1000.0);
        max_ms = max_ms.max(measured.latency_us.max() as f64 / 1000.0);
        ok += measured.ok;
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    eprintln!("  {label}: calls/s {rates:.0?}, p99 ms {p99s:.1?}");
    Writes {
        port,
        ok,
        rate: median(rates),
        p99_ms: median(p99s),
        max_ms,
        postgres_us: postgres.as_secs_f64() * 1e6 / ok as f64,
        wal_bytes: totals[0] / ok as f64,
        full_pages: totals[1] / ok as f64,
        blocks_read: totals[2] / ok as f64,
        drop_s,
        _sidecar: sidecar,
    }
}

/// p50/p99 of 400 calls of each audit read, one caller, keys drawn from the table.
async fn measure_reads(url: &str, port: u16) -> [String; 4] {
    let db = connect(url).await;
    let sample = db
        .query(
            "SELECT id, ctx_id, workspace_id, (extract(epoch FROM created_at) * 1000000)::bigint AS micros \
             FROM governance_events TABLESAMPLE SYSTEM (1) LIMIT 400",
            &[],
        )
        .await
        .unwrap();
    let sample = if sample.len() < 50 {
        db.query(
            "SELECT id, ctx_id, workspace_id, (extract(epoch FROM created_at) * 1000000)::bigint AS micros \
             FROM governance_events ORDER BY random() LIMIT 400",
            &[],
        )
        .await
        .unwrap()
    } else {
        sample
    };
    let mut client = GovernanceClient::connect(format!("http://127.0.0.1:{port}")).await.unwrap();
    let mut timings: [Vec<Duration>; 4] = Default::default();
    for row in &sample {
        let (id, ctx_id, workspace, micros): (i64, String, String, i64) =
            (row.get("id"), row.get("ctx_id"), row.get("workspace_id"), row.get("micros"));
        let t = Instant::now();
        let found =
            client.get_evidence(GetEvidenceRequest { key: Some(get_evidence_request::Key::EvidenceId(id)) }).await;
        timings[0].push(t.elapsed());
        assert!(found.is_ok(), "{found:?}");
        let t = Instant::now();
        let found =
            client.get_evidence(GetEvidenceRequest { key: Some(get_evidence_request::Key::CtxId(ctx_id)) }).await;
        timings[1].push(t.elapsed());
        assert!(found.is_ok(), "{found:?}");
        let page = |page_token: String| ListEvidenceRequest {
            workspace_id: workspace.clone(),
            page_size: 50,
            page_token,
            ..ListEvidenceRequest::default()
        };
        let t = Instant::now();
        let first = client.list_evidence(page(String::new())).await.unwrap().into_inner();
        timings[2].push(t.elapsed());
        assert!(!first.records.is_empty());
        // A page starting at a sampled row: as deep into the workspace as that row is.
        let t = Instant::now();
        client.list_evidence(page(format!("v1.{micros}.{id}"))).await.unwrap();
        timings[3].push(t.elapsed());
    }
    timings.map(|mut t| {
        t.sort();
        let at = |q: f64| t[((t.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
        format!("{:.2}/{:.2} ms", at(0.5), at(0.99))
    })
}

/// The evidence's bytes on disk (tables, TOAST and indexes, all partitions),
/// the raw size of a row, and each relation's size.
fn sizes(url: &str) -> (u64, f64, String) {
    let scalar = |sql: &str| -> String {
        let output = Command::new(pg_bin("psql")).args([url, "-qtAX", "-c", sql]).output().unwrap();
        assert!(output.status.success(), "{sql}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    // Both layouts: the tables themselves, or their partitions; and the partitioned layout's keys.
    let bytes: u64 = scalar(
        "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE c.relkind = 'r' AND \
         (c.relname IN ('governance_events', 'governance_mutation_results', 'governance_idempotency_keys') \
          OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent IN \
                       ('governance_events'::regclass, 'governance_mutation_results'::regclass)))",
    )
    .parse()
    .unwrap();
    let raw: f64 = scalar(
        "SELECT coalesce(avg(octet_length(row_to_json(e)::text)), 0) FROM \
         (SELECT * FROM governance_events TABLESAMPLE SYSTEM (1) LIMIT 5000) e",
    )
    .parse()
    .unwrap_or(0.0);
    let response = scalar(
        "SELECT format('response_json: %s B as text, %s B stored', round(avg(octet_length(response_json::text))), \
                round(avg(pg_column_size(response_json)))) \
         FROM (SELECT response_json FROM governance_events TABLESAMPLE SYSTEM (1) LIMIT 5000) e",
    );
    let each = scalar(
        "SELECT string_agg(format('%s %s', name, pg_size_pretty(size)), E'\\n' ORDER BY size DESC) FROM ( \
           SELECT coalesce(p.relname, c.relname) AS name, sum(pg_relation_size(c.oid) + \
                  coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)) AS size \
           FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent \
           WHERE coalesce(p.relname, c.relname) LIKE 'governance_%' AND c.relkind IN ('r', 'i') \
           GROUP BY 1) s",
    );
    (bytes, raw, format!("{response}\n{each}"))
}
