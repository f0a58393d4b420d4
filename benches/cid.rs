//! Throughput of the streaming IPFS CID computation next to BLAKE3 on the same 64 MiB buffer.
//!
//! Both hashers take the buffer in 64 KiB slices, so the numbers include the per-call cost that a
//! streamed upload pays. BLAKE3 runs on one thread (`update`, not `update_rayon`), as the CID
//! builder does. Run with `cargo bench --bench cid`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kura::ipfs::cid_builder::{CidBuilder, CidOptions};

const BUFFER_LEN: usize = 64 * 1024 * 1024;
const SLICE_LEN: usize = 64 * 1024;

/// Returns `len` bytes of xorshift64 output. Incompressible content keeps the benchmark honest
/// for any future hasher that might special-case repeated bytes.
fn pseudo_random_bytes(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

fn bench_hashers(c: &mut Criterion) {
    let buffer = pseudo_random_bytes(BUFFER_LEN);

    let mut group = c.benchmark_group("hash_64mib");
    group.throughput(Throughput::Bytes(BUFFER_LEN as u64));
    // One pass over 64 MiB takes tens of milliseconds, so 10 samples are enough for a stable
    // mean and keep the run short.
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));

    group.bench_function("cid_builder_sha256", |b| {
        b.iter(|| {
            let mut builder = CidBuilder::new(CidOptions::default());
            for slice in buffer.chunks(SLICE_LEN) {
                builder.update(black_box(slice));
            }
            black_box(builder.finish())
        })
    });

    group.bench_function("blake3_hasher", |b| {
        b.iter(|| {
            let mut hasher = blake3::Hasher::new();
            for slice in buffer.chunks(SLICE_LEN) {
                hasher.update(black_box(slice));
            }
            black_box(hasher.finalize())
        })
    });

    group.finish();
}

criterion_group!(benches, bench_hashers);
criterion_main!(benches);
