//! WebP decoding and encoding through libwebp, built from source by the `webp` crate.
//!
//! Still images are decoded by libwebp, which can shrink while it decodes: an opaque image that
//! the pipeline resizes to a much smaller size comes out of the decoder already reduced, as JPEGs
//! do at a reduced DCT scale. Animations and the metadata chunks go through the `image` crate's
//! pure-Rust decoder, which composites frames onto the canvas.
//!
//! libwebp encodes each picture; kura writes the RIFF container itself. That gives animations
//! exact per-frame durations and loop counts and lets still images carry ICC, EXIF and XMP
//! chunks. The layout follows Google's "WebP Container Specification": a `VP8X` header chunk
//! with feature flags, then `ICCP`, `ANIM`, the image or `ANMF` frame chunks, `EXIF` and `XMP `.

use std::io::Cursor;

use image::codecs::webp::WebPDecoder;
use image::{AnimationDecoder, ImageDecoder, RgbaImage};

use super::{
    changed_bounds, check_size, collect_frames, finish_frames, image_error, image_limits,
    loop_count_of, swaps_sides, take_orientation, DecodeHint, Decoded, Frame, Metadata,
    OutputFormat, PixelError, SourceFormat,
};

/// Largest canvas side that WebP can store.
const MAX_SIDE: u32 = 16_383;
/// Largest frame duration in milliseconds that an `ANMF` chunk can store (24 bits).
const MAX_DURATION_MS: u32 = (1 << 24) - 1;
/// libwebp's effort from 0 (fastest) to 6 (smallest). 4 is libwebp's own default.
const METHOD: i32 = 4;

/// `VP8X` feature flags.
const FLAG_ICC: u8 = 0x20;
const FLAG_ALPHA: u8 = 0x10;
const FLAG_EXIF: u8 = 0x08;
const FLAG_XMP: u8 = 0x04;
const FLAG_ANIMATION: u8 = 0x02;
/// `ANMF` flag: the frame replaces the pixels under it instead of alpha-blending onto them.
const ANMF_NO_BLEND: u8 = 0x02;

/// Decodes a WebP, or every frame of an animated WebP composited onto the full canvas.
pub(super) fn decode(bytes: &[u8], hint: &DecodeHint) -> Result<Decoded, PixelError> {
    let format = SourceFormat::Webp;
    let mut decoder =
        WebPDecoder::new(Cursor::new(bytes)).map_err(|error| image_error(format, error))?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, 1, hint)?;
    decoder
        .set_limits(image_limits(hint))
        .map_err(|error| image_error(format, error))?;
    // Unreadable metadata is dropped rather than failing the whole image.
    let profile = decoder.icc_profile().ok().flatten();
    let (orientation, exif) = take_orientation(decoder.exif_metadata().ok().flatten());
    let xmp = decoder.xmp_metadata().ok().flatten();

    let (mut frames, loop_count) = if decoder.has_animation() {
        let loop_count = loop_count_of(decoder.loop_count());
        let frames = collect_frames(decoder.into_frames(), format, (width, height), hint)?;
        (frames, Some(loop_count))
    } else {
        // The target is upright, while libwebp scales the stored pixels.
        let target = hint.target.map(|(w, h)| {
            if swaps_sides(orientation) {
                (h, w)
            } else {
                (w, h)
            }
        });
        let image = decode_still(bytes, (width, height), target)?;
        (vec![Frame::still(image)], None)
    };
    let loop_count = if frames.len() > 1 { loop_count } else { None };

    let (icc_converted, kept_icc) = finish_frames(&mut frames, profile, orientation, hint);
    let original = if swaps_sides(orientation) {
        (height, width)
    } else {
        (width, height)
    };
    Ok(Decoded::from_frames(
        frames,
        loop_count,
        format,
        icc_converted,
        original,
        Metadata {
            exif,
            xmp,
            icc: kept_icc,
        },
    ))
}

/// Decodes a still WebP of `size` with libwebp, shrunk on load when `target` is much smaller.
///
/// The `webp` crate's safe decoder has no scaling option, so this calls libwebp's advanced
/// decoding API directly.
#[allow(unsafe_code)]
fn decode_still(
    bytes: &[u8],
    size: (u32, u32),
    target: Option<(u32, u32)>,
) -> Result<RgbaImage, PixelError> {
    use libwebp_sys as sys;

    let format = SourceFormat::Webp;
    let failed = |what: &str, status: sys::VP8StatusCode| {
        PixelError::invalid(format, format!("libwebp {what} failed: {status:?}"))
    };
    // SAFETY: the config is initialised by libwebp before use, `bytes` outlives every call, and
    // the output buffer is external memory that libwebp writes within `stride * height` bytes.
    unsafe {
        let mut config = std::mem::zeroed::<sys::WebPDecoderConfig>();
        if !sys::WebPInitDecoderConfig(&mut config) {
            return Err(PixelError::invalid(format, "libwebp rejected the decoder configuration: its version does not match libwebp-sys"));
        }
        let status = sys::WebPGetFeatures(bytes.as_ptr(), bytes.len(), &mut config.input);
        if status != sys::VP8StatusCode::VP8_STATUS_OK {
            return Err(failed("header parsing", status));
        }
        // libwebp scales colour and alpha planes separately, so transparent pixels would bleed
        // their hidden colour into the edges. Images with alpha are resized later, premultiplied.
        let (out_w, out_h) = match target {
            Some(target) if config.input.has_alpha == 0 => shrink_on_load_size(size, target),
            _ => size,
        };
        if (out_w, out_h) != size {
            config.options.use_scaling = 1;
            config.options.scaled_width = out_w as i32;
            config.options.scaled_height = out_h as i32;
        }
        let stride = out_w as usize * 4;
        let mut pixels = vec![0u8; stride * out_h as usize];
        config.output.colorspace = sys::WEBP_CSP_MODE::MODE_RGBA;
        config.output.is_external_memory = 1;
        config.output.u.RGBA.rgba = pixels.as_mut_ptr();
        config.output.u.RGBA.stride = stride as i32;
        config.output.u.RGBA.size = pixels.len();
        let status = sys::WebPDecode(bytes.as_ptr(), bytes.len(), &mut config);
        sys::WebPFreeDecBuffer(&mut config.output);
        if status != sys::VP8StatusCode::VP8_STATUS_OK {
            return Err(failed("decoding", status));
        }
        RgbaImage::from_raw(out_w, out_h, pixels)
            .ok_or_else(|| PixelError::invalid(format, "decoder returned a short pixel buffer"))
    }
}

/// Returns the size that libwebp decodes `size` to for a resize to `target`: reduced by the
/// largest whole factor that still covers the target on both sides, or `size` when that factor
/// is below 2. The pipeline's own resize then scales the rest of the way.
fn shrink_on_load_size(size: (u32, u32), target: (u32, u32)) -> (u32, u32) {
    let factor_w = size.0 / target.0.max(1);
    let factor_h = size.1 / target.1.max(1);
    let factor = factor_w.min(factor_h);
    if factor < 2 {
        return size;
    }
    (size.0.div_ceil(factor), size.1.div_ceil(factor))
}

/// Returns the canvas size and the EXIF block from the headers.
pub(super) fn header(bytes: &[u8]) -> Option<(u32, u32, Option<Vec<u8>>)> {
    let mut decoder = WebPDecoder::new(Cursor::new(bytes)).ok()?;
    let (width, height) = decoder.dimensions();
    Some((width, height, decoder.exif_metadata().ok().flatten()))
}

/// Encodes one image as lossy (at `quality`) or lossless WebP.
pub(super) fn encode(
    image: &RgbaImage,
    quality: u8,
    lossless: bool,
    metadata: Option<&Metadata>,
) -> Result<Vec<u8>, PixelError> {
    check_output_size(image)?;
    let encoded = encode_picture(image, quality, lossless)?;
    let metadata = metadata.filter(|m| m.icc.is_some() || m.exif.is_some() || m.xmp.is_some());
    let Some(metadata) = metadata else {
        return Ok(encoded);
    };
    let image_chunks = bitstream_chunks(&encoded)?;
    let mut flags = 0;
    if super::super::ops::has_alpha(image) {
        flags |= FLAG_ALPHA;
    }
    let mut body = Vec::new();
    if let Some(profile) = &metadata.icc {
        flags |= FLAG_ICC;
        push_chunk(&mut body, b"ICCP", profile);
    }
    body.extend_from_slice(&image_chunks);
    if let Some(exif) = &metadata.exif {
        flags |= FLAG_EXIF;
        push_chunk(&mut body, b"EXIF", exif);
    }
    if let Some(xmp) = &metadata.xmp {
        flags |= FLAG_XMP;
        push_chunk(&mut body, b"XMP ", xmp);
    }
    Ok(container(flags, image.dimensions(), &body))
}

/// Encodes an animation. After the first frame, each frame stores only the rectangle that changed
/// and replaces the pixels under it, so transparency can both appear and disappear.
pub(super) fn encode_animation(
    frames: &[Frame],
    loop_count: Option<u16>,
    quality: u8,
    lossless: bool,
    metadata: Option<&Metadata>,
) -> Result<Vec<u8>, PixelError> {
    let first = &frames[0].image;
    check_output_size(first)?;
    let (width, height) = first.dimensions();
    let mut flags = FLAG_ANIMATION;
    if frames
        .iter()
        .any(|frame| super::super::ops::has_alpha(&frame.image))
    {
        flags |= FLAG_ALPHA;
    }
    let mut body = Vec::new();
    if let Some(profile) = metadata.and_then(|m| m.icc.as_ref()) {
        flags |= FLAG_ICC;
        push_chunk(&mut body, b"ICCP", profile);
    }
    // Background colour (transparent, as B, G, R, A) and the loop count, 0 meaning forever.
    let mut anim = vec![0, 0, 0, 0];
    anim.extend_from_slice(&loop_count.unwrap_or(0).to_le_bytes());
    push_chunk(&mut body, b"ANIM", &anim);

    let mut previous: Option<&RgbaImage> = None;
    for frame in frames {
        let (mut x, mut y, mut w, mut h) = match previous {
            None => (0, 0, width, height),
            Some(previous) => changed_bounds(previous, &frame.image).unwrap_or((0, 0, 1, 1)),
        };
        // Frame offsets are stored halved, so they must be even.
        w += x % 2;
        x -= x % 2;
        h += y % 2;
        y -= y % 2;
        let region = image::imageops::crop_imm(&frame.image, x, y, w, h).to_image();
        let encoded = encode_picture(&region, quality, lossless)?;
        let mut payload = Vec::new();
        push_u24(&mut payload, x / 2);
        push_u24(&mut payload, y / 2);
        push_u24(&mut payload, w - 1);
        push_u24(&mut payload, h - 1);
        push_u24(&mut payload, frame.delay_ms.min(MAX_DURATION_MS));
        payload.push(ANMF_NO_BLEND);
        payload.extend_from_slice(&bitstream_chunks(&encoded)?);
        push_chunk(&mut body, b"ANMF", &payload);
        previous = Some(&frame.image);
    }
    if let Some(metadata) = metadata {
        if let Some(exif) = &metadata.exif {
            flags |= FLAG_EXIF;
            push_chunk(&mut body, b"EXIF", exif);
        }
        if let Some(xmp) = &metadata.xmp {
            flags |= FLAG_XMP;
            push_chunk(&mut body, b"XMP ", xmp);
        }
    }
    Ok(container(flags, (width, height), &body))
}

fn check_output_size(image: &RgbaImage) -> Result<(), PixelError> {
    let (width, height) = image.dimensions();
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(PixelError::UnsupportedOutput {
            format: "WebP",
            detail: format!("{width}x{height} px exceeds the WebP limit of {MAX_SIDE} px per side"),
        });
    }
    Ok(())
}

/// Runs libwebp on one picture and returns a complete WebP file.
fn encode_picture(image: &RgbaImage, quality: u8, lossless: bool) -> Result<Vec<u8>, PixelError> {
    let format = OutputFormat::Webp;
    let mut config = webp::WebPConfig::new()
        .map_err(|()| PixelError::encode(format, "libwebp rejected its default configuration"))?;
    config.lossless = i32::from(lossless);
    config.quality = if lossless { 75.0 } else { f32::from(quality) };
    config.method = METHOD;
    let (width, height) = image.dimensions();
    // libwebp drops the alpha plane by itself when every pixel is opaque.
    let memory = webp::Encoder::from_rgba(image.as_raw(), width, height)
        .encode_advanced(&config)
        .map_err(|error| PixelError::encode(format, format!("{error:?}")))?;
    Ok(memory.to_vec())
}

/// Returns the `ALPH`, `VP8 ` and `VP8L` chunks (with headers) of a complete WebP file.
fn bitstream_chunks(file: &[u8]) -> Result<Vec<u8>, PixelError> {
    let malformed = || PixelError::encode(OutputFormat::Webp, "libwebp wrote a malformed file");
    if file.len() < 12 || &file[..4] != b"RIFF" || &file[8..12] != b"WEBP" {
        return Err(malformed());
    }
    let mut out = Vec::new();
    let mut offset = 12;
    while offset + 8 <= file.len() {
        let id = &file[offset..offset + 4];
        let size = u32::from_le_bytes(
            file[offset + 4..offset + 8]
                .try_into()
                .map_err(|_| malformed())?,
        ) as usize;
        let end = offset + 8 + size + size % 2;
        if end > file.len() + size % 2 {
            return Err(malformed());
        }
        if matches!(id, b"ALPH" | b"VP8 " | b"VP8L") {
            out.extend_from_slice(&file[offset..end.min(file.len())]);
            if end > file.len() {
                out.push(0);
            }
        }
        offset = end;
    }
    if out.is_empty() {
        return Err(malformed());
    }
    Ok(out)
}

/// Appends a chunk: four-character id, little-endian size, payload and a pad byte when the size
/// is odd.
fn push_chunk(out: &mut Vec<u8>, id: &[u8; 4], payload: &[u8]) {
    out.extend_from_slice(id);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    if payload.len() % 2 == 1 {
        out.push(0);
    }
}

fn push_u24(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes()[..3]);
}

/// Wraps `body` chunks in a RIFF container behind a `VP8X` chunk with `flags` and the canvas size.
fn container(flags: u8, (width, height): (u32, u32), body: &[u8]) -> Vec<u8> {
    let mut vp8x = vec![flags, 0, 0, 0];
    push_u24(&mut vp8x, width - 1);
    push_u24(&mut vp8x, height - 1);
    let mut chunks = Vec::with_capacity(body.len() + 18);
    push_chunk(&mut chunks, b"VP8X", &vp8x);
    chunks.extend_from_slice(body);
    let mut out = Vec::with_capacity(chunks.len() + 12);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&((chunks.len() + 4) as u32).to_le_bytes());
    out.extend_from_slice(b"WEBP");
    out.extend_from_slice(&chunks);
    out
}

#[cfg(test)]
mod tests {
    use super::super::super::ops;
    use super::super::test_support::*;
    use super::super::{decode as decode_any, encode as encode_any, EncodeOptions};
    use super::*;

    fn decode_fixture(name: &str) -> Decoded {
        decode_any(&fixture(name), DecodeHint::default())
            .unwrap_or_else(|error| panic!("{name}: {error}"))
    }

    #[test]
    fn exif_orientation_6_rotates_clockwise() {
        let decoded = decode_fixture("orient-webp-exif6-hopper.webp");
        let stored = image::load_from_memory(&fixture("orient-webp-exif6-hopper.webp"))
            .unwrap()
            .into_rgba8();
        let rotated = image::imageops::rotate90(&stored);
        assert_eq!(decoded.frames[0].image.dimensions(), rotated.dimensions());
        assert!(mean_abs_diff(&decoded.frames[0].image, &rotated) < 1.0);
        assert!(mean_abs_diff(&decoded.frames[0].image, &stored) > 20.0);
    }

    /// Encodes a real photo (`rocket.jpg` resized to 1280×853) as a lossy WebP, with its top 100
    /// rows transparent when `alpha` is set.
    fn photo_webp(alpha: bool) -> (RgbaImage, Vec<u8>) {
        let decoded = decode_any(&fixture("rocket.jpg"), DecodeHint::default()).unwrap();
        let mut image = ops::resize(&decoded.frames[0].image, 1280, 853);
        if alpha {
            for pixel in image.pixels_mut().take(1280 * 100) {
                pixel.0[3] = 0;
            }
        }
        let bytes = encode(&image, 90, false, None).unwrap();
        (image, bytes)
    }

    fn hint_for(target: (u32, u32)) -> DecodeHint {
        DecodeHint {
            target: Some(target),
            ..DecodeHint::default()
        }
    }

    #[test]
    fn shrink_factor_keeps_the_target_covered() {
        for (size, target, expected) in [
            ((5120, 2880), (500, 281), (512, 288)),
            ((1280, 853), (300, 200), (320, 214)),
            ((1280, 853), (640, 427), (1280, 853)),
            ((1000, 1000), (10, 900), (1000, 1000)),
            ((1000, 1000), (1, 1), (1, 1)),
            ((999, 10), (100, 1), (111, 2)),
        ] {
            let shrunk = shrink_on_load_size(size, target);
            assert_eq!(shrunk, expected, "{size:?} -> {target:?}");
            assert!(shrunk.0 >= target.0, "{size:?} -> {target:?}: width");
            assert!(shrunk.1 >= target.1, "{size:?} -> {target:?}: height");
        }
    }

    #[test]
    fn shrink_on_load_matches_a_full_decode() {
        let (_, bytes) = photo_webp(false);
        let reduced = decode_any(&bytes, hint_for((300, 200))).unwrap();
        assert_eq!(reduced.frames[0].image.dimensions(), (320, 214));
        assert_eq!(
            (reduced.original_width, reduced.original_height),
            (1280, 853)
        );

        let full = decode_any(&bytes, DecodeHint::default()).unwrap();
        assert_eq!(full.frames[0].image.dimensions(), (1280, 853));
        let from_full = ops::resize(&full.frames[0].image, 300, 200);
        let from_reduced = ops::resize(&reduced.frames[0].image, 300, 200);
        let difference = mean_abs_diff(&from_full, &from_reduced);
        assert!(difference < 3.0, "mean absolute difference {difference:.2}");
    }

    #[test]
    fn alpha_images_decode_at_full_size() {
        let (original, bytes) = photo_webp(true);
        let decoded = decode_any(&bytes, hint_for((300, 200))).unwrap();
        assert_eq!(decoded.frames[0].image.dimensions(), (1280, 853));
        assert_eq!(decoded.frames[0].image.get_pixel(5, 5).0[3], 0);
        assert_eq!(decoded.frames[0].image.get_pixel(5, 500).0[3], 255);
        assert!(mean_abs_diff(&original, &decoded.frames[0].image) < 3.0);
    }

    #[test]
    fn shrink_on_load_follows_exif_rotation() {
        // A big-endian TIFF block whose one entry sets Orientation (0x0112) to 6: stored
        // 1280×853 pixels turn upright to 853×1280.
        let exif = b"MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0".to_vec();
        let (image, _) = photo_webp(false);
        let metadata = Metadata {
            exif: Some(exif),
            ..Metadata::default()
        };
        let bytes = encode(&image, 90, false, Some(&metadata)).unwrap();

        let decoded = decode_any(&bytes, hint_for((200, 300))).unwrap();
        assert_eq!(
            (decoded.original_width, decoded.original_height),
            (853, 1280)
        );
        // Stored 1280×853 covers the stored target 300×200 four times over.
        assert_eq!(decoded.frames[0].image.dimensions(), (214, 320));
    }

    #[test]
    fn animation_keeps_frames_delays_and_loop_count() {
        let decoded = decode_fixture("anim-10f-loop.webp");
        assert_eq!(decoded.frames.len(), 10);
        assert_eq!(decoded.loop_count, Some(3));
        for lossless in [false, true] {
            let options = EncodeOptions {
                lossless,
                ..EncodeOptions::default()
            };
            let bytes = encode_any(
                &decoded.frames,
                decoded.loop_count,
                OutputFormat::Webp,
                &options,
            )
            .unwrap();
            let again = decode_any(&bytes, DecodeHint::default()).unwrap();
            assert_eq!(again.frames.len(), 10);
            assert_eq!(again.loop_count, Some(3));
            for (before, after) in decoded.frames.iter().zip(&again.frames) {
                assert_eq!(before.delay_ms, after.delay_ms);
                let difference = mean_abs_diff(&before.image, &after.image);
                assert!(
                    difference < 4.0,
                    "lossless {lossless}: frame differs by {difference:.2}"
                );
            }
        }
    }

    #[test]
    fn gif_animation_becomes_animated_webp() {
        let decoded = decode_fixture("anim-30f-transparent.gif");
        let bytes = encode_any(
            &decoded.frames,
            decoded.loop_count,
            OutputFormat::Webp,
            &EncodeOptions::default(),
        )
        .unwrap();
        let again = decode_any(&bytes, DecodeHint::default()).unwrap();
        assert_eq!(again.frames.len(), 30);
        assert_eq!(again.loop_count, decoded.loop_count);
        let transparent = |image: &RgbaImage| image.pixels().filter(|p| p.0[3] < 128).count();
        for (before, after) in decoded.frames.iter().zip(&again.frames) {
            let (b, a) = (transparent(&before.image), transparent(&after.image));
            assert!(
                b.abs_diff(a) <= b / 50 + 4,
                "transparent pixels {b} became {a}"
            );
        }
    }

    #[test]
    fn narrow_animation_shrinks_to_one_pixel_wide() {
        let decoded = decode_fixture("anim-97f-13x169.webp");
        assert_eq!(decoded.frames.len(), 97);
        assert_eq!((decoded.width, decoded.height), (13, 169));
        let frames: Vec<Frame> = decoded
            .frames
            .iter()
            .map(|frame| Frame {
                image: super::super::super::ops::resize(&frame.image, 1, 10),
                delay_ms: frame.delay_ms,
            })
            .collect();
        let bytes = encode_any(
            &frames,
            decoded.loop_count,
            OutputFormat::Webp,
            &EncodeOptions::default(),
        )
        .unwrap();
        let again = decode_any(&bytes, DecodeHint::default()).unwrap();
        assert_eq!((again.width, again.height), (1, 10));
        assert_eq!(again.frames.len(), 97);
    }

    #[test]
    fn oversized_canvas_is_rejected_from_the_header() {
        let error = decode_any(
            &fixture("bomb-webp-canvas-16383sq.webp"),
            DecodeHint::default(),
        )
        .unwrap_err();
        assert!(
            matches!(error, PixelError::TooLarge { width: 16383, .. }),
            "{error}"
        );
    }

    #[test]
    fn still_image_round_trips_with_and_without_metadata() {
        let decoded = decode_fixture("skimage-logo-alpha.png");
        let image = &decoded.frames[0].image;
        let plain = encode(image, 90, false, None).unwrap();
        assert!(plain.starts_with(b"RIFF"));
        assert_eq!(&plain[8..12], b"WEBP");
        for id in [b"ICCP", b"EXIF", b"XMP "] {
            assert!(!plain.windows(4).any(|w| w == id));
        }
        let metadata = Metadata {
            exif: Some(b"MM\0\x2a\0\0\0\x08\0\0".to_vec()),
            xmp: Some(b"<x:xmpmeta/>".to_vec()),
            icc: Some(lcms2::Profile::new_srgb().icc().unwrap()),
        };
        let tagged = encode(image, 90, false, Some(&metadata)).unwrap();
        let again = decode_any(
            &tagged,
            DecodeHint {
                keep_icc_profile: true,
                ..DecodeHint::default()
            },
        )
        .unwrap();
        assert_eq!(again.metadata.xmp.as_deref(), Some(&b"<x:xmpmeta/>"[..]));
        assert!(again.metadata.icc.is_some());
        assert!(again.metadata.exif.is_some());
        assert!(mean_abs_diff(image, &again.frames[0].image) < 3.0);
        let lossless = encode(image, 90, true, None).unwrap();
        let again = decode_any(&lossless, DecodeHint::default()).unwrap();
        assert_eq!(&again.frames[0].image, image);
    }

    #[test]
    fn odd_sized_chunks_are_padded() {
        let mut out = Vec::new();
        push_chunk(&mut out, b"TEST", &[1, 2, 3]);
        assert_eq!(out, b"TEST\x03\0\0\0\x01\x02\x03\0");
    }
}
