//! Cost of common transformations on large photos, split into decoding, the resize stage,
//! encoding, and the whole `pipeline::run` that serves a cold (uncached) variant.
//!
//! `cargo bench --bench transform` reads the photos that `benches/fetch-photos.sh` puts in
//! `target/bench-photos/` (or `$KURA_BENCH_PHOTOS`). Under `cargo test` each case runs once on a
//! small repository fixture instead, so the test suite neither needs the download nor spends
//! time on 15 MP images.

use std::collections::BTreeMap;
use std::path::PathBuf;

use criterion::{criterion_group, BenchmarkId, Criterion};
use kura::transform::codec::{
    self, DecodeHint, EncodeOptions, Frame, OutputFormat, DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS,
};
use kura::transform::color::Color;
use kura::transform::plan::Background;
use kura::transform::{ops, parse_chain, pipeline, plan_geometry, Accepts, GeomOp, Limits, Plan};

/// One transformation on one photo.
struct Case {
    /// Benchmark group name.
    name: &'static str,
    /// File in the photo directory.
    photo: &'static str,
    /// Small fixture in `tests/fixtures` used under `cargo test`.
    fixture: &'static str,
    /// The `tr` chain, as a URL gives it.
    chain: &'static str,
    format: OutputFormat,
    quality: u8,
}

const CASES: [Case; 5] = [
    // A camera-sized JPEG to a thumbnail: the decoder must shrink on load (1/8 DCT scale).
    Case {
        name: "jpeg_12mp_w500_jpeg",
        photo: "photo-12mp.jpg",
        fixture: "rocket.jpg",
        chain: "w-500,q-80,f-jpg",
        format: OutputFormat::Jpeg,
        quality: 80,
    },
    // `w-500,h-500` is how ImageKit URLs ask for a square centre crop: the default crop mode
    // scales the photo to cover 500×500 and cuts the middle. The source is a progressive
    // 5120×2880 JPEG.
    Case {
        name: "jpeg_prog_15mp_crop500_webp",
        photo: "flow-prog.jpg",
        fixture: "jpeg-progressive-restart-420.jpg",
        chain: "w-500,h-500,q-70,f-webp",
        format: OutputFormat::Webp,
        quality: 70,
    },
    // A 5120×2880 RGBA PNG with transparent areas to a WebP thumbnail that keeps the alpha.
    Case {
        name: "png_alpha_15mp_w500_webp",
        photo: "kay-alpha.png",
        fixture: "skimage-logo-alpha.png",
        chain: "w-500,q-80,f-webp",
        format: OutputFormat::Webp,
        quality: 80,
    },
    // A 5120×2880 lossy WebP to a WebP thumbnail: libwebp shrinks it while decoding.
    Case {
        name: "webp_15mp_w500_webp",
        photo: "flow.webp",
        fixture: "orient-webp-exif6-hopper.webp",
        chain: "w-500,q-80,f-webp",
        format: OutputFormat::Webp,
        quality: 80,
    },
    // A 1 MP photo to AVIF at the same size: the encoder dominates. The test fixture is 1×1
    // because rav1e in a test build, with debug assertions, takes seconds even at 227×149.
    Case {
        name: "jpeg_1mp_avif",
        photo: "photo-1mp.jpg",
        fixture: "meta-multiple-exif-1x1.jpg",
        chain: "f-avif,q-60",
        format: OutputFormat::Avif,
        quality: 60,
    },
];

/// Returns whether criterion measures (`cargo bench`) rather than running each benchmark once
/// as a test (`cargo test`, `cargo bench -- --test`) or listing them. Criterion decides the same
/// way from the same flags.
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|arg| arg == flag);
    has("--bench") && !has("--test") && !has("--list")
}

/// Reads the photo of `case`, or its fixture when only testing.
fn source_bytes(case: &Case) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if !measuring() {
        let path = root.join("tests/fixtures").join(case.fixture);
        return std::fs::read(&path)
            .unwrap_or_else(|error| panic!("failed to read {}: {error}", path.display()));
    }
    let dir = std::env::var_os("KURA_BENCH_PHOTOS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/bench-photos"));
    let path = dir.join(case.photo);
    std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "failed to read benchmark photo {}: {error}; run benches/fetch-photos.sh first",
            path.display()
        )
    })
}

fn settings() -> pipeline::Settings {
    pipeline::Settings {
        limits: Limits::default(),
        max_source_pixels: DEFAULT_MAX_PIXELS,
        max_frames: DEFAULT_MAX_FRAMES,
        default_quality: 80,
        auto_format: true,
    }
}

/// Returns the decode hint and geometry that `pipeline::run` derives for the first step, so
/// that the stage benchmarks do the same work as the whole run.
fn first_step(bytes: &[u8], plan: &Plan) -> (DecodeHint, Vec<GeomOp>) {
    let size = codec::upright_size(bytes).expect("the photo has readable headers");
    // A chain of only output parameters (`f`, `q`) has no step.
    let geometry = match plan.steps().first() {
        Some(step) => {
            plan_geometry(step, size, size, &Limits::default()).expect("the chain fits the photo")
        }
        None => Vec::new(),
    };
    let hint = DecodeHint {
        target: ops::shrink_target(&geometry),
        ..DecodeHint::default()
    };
    (hint, geometry)
}

fn transform(c: &mut Criterion) {
    let settings = settings();
    let accepts = Accepts {
        avif: true,
        webp: true,
    };
    let black = Background::Color(Color {
        r: 0,
        g: 0,
        b: 0,
        opacity_percent: 100,
    });

    for case in &CASES {
        let bytes = source_bytes(case);
        let plan = parse_chain(case.chain, &BTreeMap::new()).expect("the chain is valid");
        let (hint, geometry) = first_step(&bytes, &plan);
        let decoded = codec::decode(&bytes, hint).expect("the photo decodes");
        let image = &decoded.frames[0].image;
        let resized = [Frame::still(
            ops::apply_geometry(image, &geometry, &black).expect("the geometry fits"),
        )];
        let options = EncodeOptions {
            quality: case.quality,
            ..EncodeOptions::default()
        };

        let mut group = c.benchmark_group(case.name);
        // One AVIF encode takes 1.5 s and a progressive 15 MP decode 0.2 s (2-core EPYC VM).
        // Ten samples keep a whole run near four minutes, and criterion still reports a spread.
        group.sample_size(10);
        group.bench_function("decode", |b| {
            b.iter(|| codec::decode(&bytes, hint).unwrap())
        });
        if !geometry.is_empty() {
            let label = format!("{}x{}", image.width(), image.height());
            group.bench_function(BenchmarkId::new("resize", label), |b| {
                b.iter(|| ops::apply_geometry(image, &geometry, &black).unwrap())
            });
        }
        group.bench_function("encode", |b| {
            b.iter(|| codec::encode(&resized, None, case.format, &options).unwrap())
        });
        group.bench_function(BenchmarkId::new("pipeline", case.chain), |b| {
            b.iter(|| pipeline::run(&bytes, &plan, accepts, &settings).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, transform);

/// Runs the benchmarks on a spawned thread, as the server runs transformations on its blocking
/// pool. With glibc, the main thread's malloc arena hands large freed buffers back to the kernel,
/// so each iteration would page-fault them in again: a 15 MP progressive JPEG decoded about 8%
/// slower there than on another thread.
fn main() {
    let worker = std::thread::Builder::new()
        .name("bench".to_string())
        // The main thread's usual stack size, for the codecs' deep call chains.
        .stack_size(8 << 20)
        .spawn(|| {
            benches();
            Criterion::default().configure_from_args().final_summary();
        })
        .expect("failed to spawn the benchmark thread");
    if let Err(panic) = worker.join() {
        std::panic::resume_unwind(panic);
    }
}
