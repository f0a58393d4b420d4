//! Helper for the transformation benchmarks, run by `benches/fetch-photos.sh` and
//! `benches/compare.sh`.
//!
//! `derive DIR` writes the derived photos that the benchmarks read next to the downloaded
//! wallpapers. `time FILE CHAIN RUNS` runs kura's whole in-process pipeline on one file and prints
//! the wall time of each run, for comparison with libvips in the same process shape.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use kura::transform::codec::{
    self, DecodeHint, EncodeOptions, OutputFormat, DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS,
};
use kura::transform::pipeline::{self, Settings};
use kura::transform::{ops, parse_chain, Accepts, Limits};

/// The wallpaper that the derived photos are scaled from (5120×2880).
const WALLPAPER: &str = "safelanding.jpg";
/// Derived photos: file name, width, height. 4608×2592 is 11.9 MP, the 16:9 output of a 12 MP
/// camera; 1334×750 is 1.0 MP.
const DERIVED: [(&str, u32, u32); 2] =
    [("photo-12mp.jpg", 4608, 2592), ("photo-1mp.jpg", 1334, 750)];
/// The derived WebP and the photo it is encoded from at full size.
const WEBP_DERIVED: (&str, &str) = ("flow.webp", "flow-prog.jpg");
/// Quality of the derived photos, in the range that cameras and phones write.
const DERIVED_QUALITY: u8 = 92;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["derive", dir] => derive(Path::new(dir)),
        ["time", file, chain, runs] => {
            let runs = runs
                .parse()
                .with_context(|| format!("invalid run count {runs:?}: expected an integer"))?;
            time(Path::new(file), chain, runs)
        }
        _ => bail!("usage: transform-bench derive DIR | transform-bench time FILE CHAIN RUNS"),
    }
}

/// Scales the wallpaper in `dir` to each derived size and writes it as a 4:2:0 JPEG, the chroma
/// subsampling of camera files, so that the decoders see what users upload. Then writes the
/// progressive wallpaper again as a full-size lossy WebP.
fn derive(dir: &Path) -> Result<()> {
    let source = dir.join(WALLPAPER);
    let bytes =
        std::fs::read(&source).with_context(|| format!("failed to read {}", source.display()))?;
    let decoded = codec::decode(&bytes, DecodeHint::default())
        .with_context(|| format!("failed to decode {}", source.display()))?;
    let full = &decoded.frames[0].image;
    for (name, width, height) in DERIVED {
        let scaled = ops::resize(full, width, height);
        let mut out = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, DERIVED_QUALITY);
        encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
        encoder.encode(
            scaled.as_raw(),
            width as u16,
            height as u16,
            jpeg_encoder::ColorType::Rgba,
        )?;
        let path = dir.join(name);
        std::fs::write(&path, &out)
            .with_context(|| format!("failed to write {}", path.display()))?;
        println!(
            "wrote {} ({width}x{height}, {} bytes)",
            path.display(),
            out.len()
        );
    }

    let (name, source) = WEBP_DERIVED;
    let source = dir.join(source);
    let bytes =
        std::fs::read(&source).with_context(|| format!("failed to read {}", source.display()))?;
    let decoded = codec::decode(&bytes, DecodeHint::default())
        .with_context(|| format!("failed to decode {}", source.display()))?;
    let options = EncodeOptions {
        quality: DERIVED_QUALITY,
        ..EncodeOptions::default()
    };
    let out = codec::encode(&decoded.frames, None, OutputFormat::Webp, &options)?;
    let path = dir.join(name);
    std::fs::write(&path, &out).with_context(|| format!("failed to write {}", path.display()))?;
    println!("wrote {} ({} bytes)", path.display(), out.len());
    Ok(())
}

/// Runs the pipeline once to warm up, then `runs` times, and prints one JSON object with the
/// time of each run in milliseconds and the output size in bytes. The file is read once before
/// timing, so the figures cover decoding, the pixel stage and encoding.
fn time(file: &Path, chain: &str, runs: usize) -> Result<()> {
    let bytes =
        std::fs::read(file).with_context(|| format!("failed to read {}", file.display()))?;
    let plan = parse_chain(chain, &BTreeMap::new())?;
    let settings = Settings {
        limits: Limits::default(),
        max_source_pixels: DEFAULT_MAX_PIXELS,
        max_frames: DEFAULT_MAX_FRAMES,
        default_quality: 80,
        auto_format: true,
    };
    let accepts = Accepts {
        avif: true,
        webp: true,
    };
    // The server runs the pipeline on a blocking-pool thread, so this does too. With glibc, the
    // main thread's malloc arena hands large freed buffers back to the kernel, and each run then
    // page-faults them in again: a 15 MP progressive JPEG took 35 ms longer there and twice the
    // page faults, as it does on any thread under GLIBC_TUNABLES=glibc.malloc.arena_max=1.
    let worker = std::thread::spawn(move || -> Result<(usize, Vec<String>)> {
        let mut output_bytes = 0;
        let mut times_ms = Vec::with_capacity(runs);
        for run in 0..=runs {
            let started = Instant::now();
            let output = pipeline::run(&bytes, &plan, accepts, &settings)?;
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            // Run 0 warms caches and the allocator and is not reported.
            if run > 0 {
                times_ms.push(format!("{elapsed:.3}"));
            }
            output_bytes = output.bytes.len();
        }
        Ok((output_bytes, times_ms))
    });
    let (output_bytes, times_ms) = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the timing thread panicked"))??;
    println!(
        "{{\"times_ms\":[{}],\"bytes\":{output_bytes}}}",
        times_ms.join(",")
    );
    Ok(())
}
