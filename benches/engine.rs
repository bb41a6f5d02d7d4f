//! The decision engine alone, on the three-rule policy of `benches/requests/`:
//! parse the body, validate, evaluate and hash (and render the response),
//! as one Evaluate call does.
//! `cargo bench --bench engine`; `benches/compare.rs` puts it beside Kernite.

use std::hint::black_box;

/// The allocator the binary uses (src/main.rs), so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use governance_sidecar::decision::json;
use governance_sidecar::decision::{Answer, execute};

fn engine(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    for name in ["approved", "denied"] {
        let text =
            std::fs::read_to_string(format!("{}/benches/requests/{name}.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
        group.bench_function(format!("parse+execute/{name}"), |b| {
            b.iter(|| {
                let body = json::parse(black_box(&text)).unwrap();
                match execute(body, Some("bench-key")).unwrap() {
                    Answer::Decided(decided) => decided,
                    Answer::Invalid(_) => unreachable!("the bench request is valid"),
                }
            })
        });
        group.bench_function(format!("parse+execute+render/{name}"), |b| {
            b.iter(|| {
                let body = json::parse(black_box(&text)).unwrap();
                let Answer::Decided(decided) = execute(body, Some("bench-key")).unwrap() else { unreachable!() };
                decided.record.response_json()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
