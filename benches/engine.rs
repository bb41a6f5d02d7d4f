//! The decision engine alone, on the three-rule policy of `benches/requests/`.
//! `cargo bench --bench engine`; `benches/compare.rs` puts it beside Kernite.
//!
//! - `execute`: validate, evaluate and hash a parsed request, as Kernite's
//!   in-process `execute_request` is measured (it is handed a parsed dict).
//!   Each iteration gets its own copy of the request, made outside the timing.
//! - `parse+execute`: from the JSON text, as one Evaluate call does.
//! - `parse+execute+render`: and the response body written as Kernite writes it.

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

criterion_group!(benches, engine);
criterion_main!(benches);
