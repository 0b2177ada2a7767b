//! What sealing the cluster's datagrams costs: a full counter-sync datagram
//! (16 KiB, as the sender packs them) sealed and opened, and a full gossip
//! piece. Throughput is in changed keys per second on one core: every
//! changed key is sealed once by its sender and opened once by each peer.
//!
//! Run: `cargo bench --bench sealing`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir::cluster::sync::{pack, Origin};
use weir_cluster::frame::{Sealer, SyncBatch, SyncEntry, SyncLimit};

/// A full datagram of keys shaped like the built-in config's per-IP keys.
fn full_batch() -> SyncBatch {
    let entries = (0..2_000)
        .map(|i| SyncEntry {
            key: format!("per_ip\0free\0i10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
            keep_secs: 3_600,
            limits: vec![
                SyncLimit {
                    spec: 0x1234,
                    head: 1_800_000_000,
                    spent: [3, 0, 0, 1],
                    refunded: [0; 4],
                },
                SyncLimit {
                    spec: 0x4321,
                    head: 1_000_000,
                    spent: [40, 12, 0, 0],
                    refunded: [0; 4],
                },
            ],
        })
        .collect();
    let origin = Origin {
        node_id: "weir-0",
        generation: 1_800_000_000_000,
        relayed: false,
    };
    pack(origin, 1_800_000_000_000_000_000, entries).remove(0)
}

fn sealing(c: &mut Criterion) {
    let sealer = Sealer::new(&[b"bench-cluster-secret-0123456789"], "weir");
    let batch = full_batch();
    let mut sealed = Vec::new();
    sealer.seal(&batch, &mut sealed).unwrap();
    println!(
        "a full sync datagram: {} bytes, {} keys",
        sealed.len(),
        batch.entries.len()
    );
    let mut group = c.benchmark_group("sync_datagram");
    group.throughput(Throughput::Elements(batch.entries.len() as u64));
    group.bench_function("seal", |b| {
        let mut out = Vec::with_capacity(sealed.len());
        b.iter(|| sealer.seal(black_box(&batch), &mut out).unwrap());
    });
    group.bench_function("open", |b| b.iter(|| sealer.open(black_box(&sealed)).unwrap()));
    group.finish();

    let piece = vec![7u8; 60_000];
    let mut group = c.benchmark_group("gossip_piece");
    group.throughput(Throughput::Bytes(piece.len() as u64));
    group.bench_function("seal", |b| {
        let mut out = Vec::new();
        b.iter(|| sealer.seal_gossip(black_box(&piece), &mut out));
    });
    let mut sealed_piece = Vec::new();
    sealer.seal_gossip(&piece, &mut sealed_piece);
    group.bench_function("open", |b| {
        b.iter(|| sealer.open_gossip(black_box(&sealed_piece)).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = sealing
}
criterion_main!(benches);
