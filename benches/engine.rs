//! The decision engine alone, on the three-rule policy of `benches/requests/`.
//! `cargo bench --bench engine`; `benches/compare.rs` puts it beside Kernite.
//!
//! - `execute`: validate, evaluate and hash a parsed request, as Kernite's
//!   in-process `execute_request` is measured (it is handed a parsed dict).
//!   Each iteration gets its own copy of the request, made outside the timing.
//! - `parse+execute`: from the JSON text, as one Evaluate call does.
//! - `parse+execute+render`: and the response body written as Kernite writes it.
//! - `gate/token/N`: identifying a caller by its bearer token against a
//!   callers file of N callers (hash, constant-time comparison with every
//!   caller's digest, the grants' handle), as every call does with `--callers`.

use std::hint::black_box;

/// The allocator the binary uses (src/main.rs), so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use governance_sidecar::decision::json;
use governance_sidecar::decision::{Answer, Decided, Value, execute};

fn decide(body: Value) -> Box<Decided> {
    match execute(body, Some("bench-key")).unwrap() {
        Answer::Decided(decided) => decided,
        Answer::Invalid(_) => unreachable!("the bench request is valid"),
    }
}

fn engine(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    for name in ["approved", "denied"] {
        let text =
            std::fs::read_to_string(format!("{}/benches/requests/{name}.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let parsed = json::parse(&text).unwrap();
        group.bench_function(format!("execute/{name}"), |b| {
            b.iter_batched(|| parsed.clone(), decide, BatchSize::SmallInput);
        });
        group.bench_function(format!("parse+execute/{name}"), |b| {
            b.iter(|| decide(json::parse(black_box(&text)).unwrap()));
        });
        group.bench_function(format!("parse+execute+render/{name}"), |b| {
            b.iter(|| decide(json::parse(black_box(&text)).unwrap()).record.response_json());
        });
    }
    group.finish();
}

fn gate(c: &mut Criterion) {
    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::Arc;

    use governance_sidecar::access::{Gate, callers};
    use sha2::{Digest as _, Sha256};

    let mut group = c.benchmark_group("gate");
    group.throughput(Throughput::Elements(1));
    let scratch = tempfile::tempdir().unwrap();
    for count in [1, 10, 100] {
        let entries: String = (0..count)
            .map(|i| {
                let digest = hex::encode(Sha256::digest(format!("token-of-caller-{i}-0123456789abcdef")));
                format!(
                    "[[callers]]\nname = \"caller-{i}\"\ntoken_sha256 = \"{digest}\"\nworkspaces = [\"ws_{i}\", \"tenant-*\"]\n\
                     operations = [\"decide\", \"execute\"]\n"
                )
            })
            .collect();
        let file = scratch.path().join(format!("callers-{count}.toml"));
        std::fs::write(&file, entries).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let gate = Gate::with_callers(Arc::new(callers::load(&file).unwrap()));
        // The last caller: no early exit would favour the first anyway.
        let header = format!("Bearer token-of-caller-{}-0123456789abcdef", count - 1);
        group.bench_function(format!("token/{count}"), |b| {
            b.iter(|| gate.identify(Some(black_box(header.as_bytes())), None).unwrap());
        });
    }
    group.finish();
}

criterion_group!(benches, engine, gate);
criterion_main!(benches);
