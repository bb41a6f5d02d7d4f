//! A tight loop over the engine, for profilers (`perf record`, `valgrind --tool=callgrind`):
//! `cargo build --release --example engine_loop && perf record -g target/release/examples/engine_loop`.
//! Run it from the repository root; it reads `benches/requests/approved.json`.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let iterations: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(200_000);
    let text = std::fs::read_to_string("benches/requests/approved.json").expect("run from the repository root");
    for _ in 0..iterations {
        let body = governance_sidecar::decision::json::parse(&text).unwrap();
        std::hint::black_box(governance_sidecar::decision::execute(body, Some("bench-key")).unwrap());
    }
}
