//! JPEG decoding and encoding.
//!
//! Two decoders share the work. Full-size decodes of colour and grey JPEGs go through
//! `zune-jpeg`, whose SIMD paths decoded a 5120×2880 photo in 89 ms against libjpeg-turbo's
//! 152 ms when built without its assembly (measured with zune-jpeg 0.5.15 and mozjpeg-sys 2.2 on
//! one x86-64 core). Everything else goes through libjpeg-turbo's decoder as the `mozjpeg` crate
//! builds it: reduced-scale decoding for shrink-on-load, CMYK and YCCK, arithmetic coding, and
//! any file that `zune-jpeg` rejects in its strict mode, so that libjpeg decides what is
//! corrupt. Encoding goes through libjpeg-turbo too, with Huffman tables optimised per image.
//!
//! libjpeg reports fatal errors by unwinding out of its error handler, so every call into it
//! runs inside `catch_unwind`, and the unwind payload becomes a [`PixelError`].

use std::io::{self, BufRead, Read};
use std::panic::{self, AssertUnwindSafe};

use image::RgbaImage;
use mozjpeg::{ColorSpace, Decompress, Marker};

use super::{
    apply_orientation, check_size, icc, swaps_sides, take_orientation, DecodeHint, Decoded, Frame,
    Metadata, OutputFormat, PixelError, SourceFormat,
};

/// Signature that starts an EXIF APP1 segment.
const EXIF_SIGNATURE: &[u8] = b"Exif\0\0";
/// Signature that starts an XMP APP1 segment.
const XMP_SIGNATURE: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
/// Signature that starts each APP2 segment carrying part of an ICC profile.
const ICC_SIGNATURE: &[u8] = b"ICC_PROFILE\0";
/// Signature of Adobe's APP14 segment, whose presence means CMYK samples are stored inverted.
const ADOBE_SIGNATURE: &[u8] = b"Adobe";
/// Largest payload of one APP segment: 65 535 bytes minus the two length bytes.
const MAX_SEGMENT_PAYLOAD: usize = 65_533;

/// Decodes a JPEG, at a reduced DCT scale when `hint.target` allows it.
pub(super) fn decode(bytes: &[u8], hint: &DecodeHint) -> Result<Decoded, PixelError> {
    let raw = match read_full_size_fast(bytes, hint) {
        Some(raw) => raw,
        None => run_libjpeg(|| read_jpeg(bytes, hint))??,
    };
    let (orientation, exif) = take_orientation(raw.exif);
    let (pixels, icc_converted, kept_icc) = match raw.samples {
        Samples::Rgba(pixels) => {
            let mut image = rgba_image(raw.width, raw.height, pixels)?;
            let converted = match raw.icc.as_deref() {
                Some(profile) if !hint.keep_icc_profile => icc::rgba_to_srgb(&mut image, profile),
                _ => false,
            };
            let kept = if hint.keep_icc_profile { raw.icc } else { None };
            (image, converted, kept)
        }
        Samples::Cmyk { pixels, inverted } => {
            let image =
                icc::cmyk_to_srgb(raw.width, raw.height, &pixels, inverted, raw.icc.as_deref());
            (image, true, None)
        }
    };
    let image = apply_orientation(pixels, orientation);
    let original = if swaps_sides(orientation) {
        (raw.full_height, raw.full_width)
    } else {
        (raw.full_width, raw.full_height)
    };
    let metadata = Metadata {
        exif,
        xmp: raw.xmp,
        icc: kept_icc,
    };
    Ok(Decoded::from_frames(
        vec![Frame::still(image)],
        None,
        SourceFormat::Jpeg,
        icc_converted,
        original,
        metadata,
    ))
}

/// Samples as a decoder returns them.
enum Samples {
    /// Colour and greyscale images, expanded to RGBA by the decoder.
    Rgba(Vec<u8>),
    /// Four-channel images; YCCK is already converted to CMYK.
    Cmyk { pixels: Vec<u8>, inverted: bool },
}

/// A decoded JPEG before orientation and colour management.
struct RawJpeg {
    width: u32,
    height: u32,
    full_width: u32,
    full_height: u32,
    samples: Samples,
    exif: Option<Vec<u8>>,
    xmp: Option<Vec<u8>>,
    icc: Option<Vec<u8>>,
}

/// A reader over the input that records whether libjpeg asked for bytes past the end, which is
/// how a truncated file shows: libjpeg itself only warns and pads the image with grey.
struct TrackingReader<'a> {
    remaining: &'a [u8],
    hit_end: bool,
}

impl Read for TrackingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let count = self.remaining.read(buf)?;
        if count == 0 && !buf.is_empty() {
            self.hit_end = true;
        }
        Ok(count)
    }
}

impl BufRead for TrackingReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.remaining.is_empty() {
            self.hit_end = true;
        }
        Ok(self.remaining)
    }

    fn consume(&mut self, amount: usize) {
        self.remaining = &self.remaining[amount.min(self.remaining.len())..];
    }
}

fn read_jpeg(bytes: &[u8], hint: &DecodeHint) -> Result<RawJpeg, PixelError> {
    let reader = TrackingReader {
        remaining: bytes,
        hit_end: false,
    };
    let mut decompress =
        Decompress::with_markers(&[Marker::APP(1), Marker::APP(2), Marker::APP(14)])
            .from_reader(reader)
            .map_err(|error| PixelError::invalid(SourceFormat::Jpeg, error))?;
    let (full_width, full_height) = (decompress.width() as u32, decompress.height() as u32);
    check_size(full_width, full_height, 1, hint)?;

    let mut exif = None;
    let mut xmp = None;
    let mut icc_chunks: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut adobe = false;
    for marker in decompress.markers() {
        let data = marker.data;
        match marker.marker {
            Marker::APP(1) if data.starts_with(EXIF_SIGNATURE) && exif.is_none() => {
                exif = Some(data[EXIF_SIGNATURE.len()..].to_vec());
            }
            Marker::APP(1) if data.starts_with(XMP_SIGNATURE) && xmp.is_none() => {
                xmp = Some(data[XMP_SIGNATURE.len()..].to_vec());
            }
            Marker::APP(2) if data.starts_with(ICC_SIGNATURE) && data.len() > 14 => {
                icc_chunks.push((data[12], data[14..].to_vec()));
            }
            Marker::APP(14) if data.starts_with(ADOBE_SIGNATURE) => adobe = true,
            _ => {}
        }
    }
    let icc = join_icc_chunks(icc_chunks);
    let target = stored_target(hint, exif.as_deref());
    decompress.scale(scale_numerator((full_width, full_height), target));

    let cmyk = matches!(
        decompress.color_space(),
        ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK
    );
    let (width, height, samples, reader) = if cmyk {
        let mut started = decompress
            .to_colorspace(ColorSpace::JCS_CMYK)
            .map_err(|error| PixelError::invalid(SourceFormat::Jpeg, error))?;
        let (width, height) = (started.width() as u32, started.height() as u32);
        let pixels = started
            .read_scanlines::<u8>()
            .map_err(|error| PixelError::invalid(SourceFormat::Jpeg, error))?;
        let reader = started
            .finish_into_inner()
            .map_err(|error| PixelError::invalid(SourceFormat::Jpeg, error))?;
        let samples = Samples::Cmyk {
            pixels,
            inverted: adobe,
        };
        (width, height, samples, reader)
    } else {
        let mut started = decompress
            .rgba()
            .map_err(|error| PixelError::invalid(SourceFormat::Jpeg, error))?;
        let (width, height) = (started.width() as u32, started.height() as u32);
        let pixels = started
            .read_scanlines::<u8>()
            .map_err(|error| PixelError::invalid(SourceFormat::Jpeg, error))?;
        let reader = started
            .finish_into_inner()
            .map_err(|error| PixelError::invalid(SourceFormat::Jpeg, error))?;
        (width, height, Samples::Rgba(pixels), reader)
    };
    if reader.hit_end {
        return Err(PixelError::invalid(
            SourceFormat::Jpeg,
            "the file is truncated: the data ends before the end-of-image marker",
        ));
    }
    Ok(RawJpeg {
        width,
        height,
        full_width,
        full_height,
        samples,
        exif,
        xmp,
        icc,
    })
}

/// Returns the stored size and the EXIF block from the headers.
pub(super) fn header(bytes: &[u8]) -> Option<(u32, u32, Option<Vec<u8>>)> {
    let options = zune_jpeg::zune_core::options::DecoderOptions::default()
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX));
    let cursor = zune_jpeg::zune_core::bytestream::ZCursor::new(bytes);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(cursor, options);
    if decoder.decode_headers().is_ok() {
        let info = decoder.info()?;
        let exif = decoder.exif().cloned();
        return Some((u32::from(info.width), u32::from(info.height), exif));
    }
    // zune-jpeg rejects some codings that libjpeg reads, arithmetic coding among them.
    run_libjpeg(|| {
        let decompress = Decompress::with_markers(&[Marker::APP(1)])
            .from_mem(bytes)
            .ok()?;
        let exif = decompress
            .markers()
            .find(|marker| marker.data.starts_with(EXIF_SIGNATURE))
            .map(|marker| marker.data[EXIF_SIGNATURE.len()..].to_vec());
        Some((decompress.width() as u32, decompress.height() as u32, exif))
    })
    .ok()
    .flatten()
}

/// Decodes with `zune-jpeg` when the image is a colour or grey DCT JPEG that fits `hint` and
/// needs no reduced-scale decode. Returns `None` for every other case, including any error, so
/// that the libjpeg path handles it.
fn read_full_size_fast(bytes: &[u8], hint: &DecodeHint) -> Option<RawJpeg> {
    use zune_jpeg::zune_core::{bytestream::ZCursor, colorspace::ColorSpace as ZuneColor};
    let options = zune_jpeg::zune_core::options::DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX))
        .jpeg_set_out_colorspace(ZuneColor::RGBA);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().ok()?;

    let info = decoder.info()?;
    // zune-jpeg fails on arithmetic coding and other precisions, which sends those to libjpeg.
    let dct = !info.sof.is_lossless();
    let colour = matches!(
        decoder.input_colorspace()?,
        ZuneColor::YCbCr | ZuneColor::Luma
    );
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    if !dct || !colour || check_size(width, height, 1, hint).is_err() {
        return None;
    }
    let exif = decoder.exif().cloned();
    if scale_numerator((width, height), stored_target(hint, exif.as_deref())) != 8 {
        return None;
    }

    let pixels = decoder.decode().ok()?;
    Some(RawJpeg {
        width,
        height,
        full_width: width,
        full_height: height,
        samples: Samples::Rgba(pixels),
        exif,
        xmp: decoder.xmp().cloned(),
        icc: decoder.icc_profile(),
    })
}

/// Runs `work`, turning a libjpeg fatal error (an unwind whose payload is its message) into a
/// [`PixelError`]. Unsupported coding processes and precisions become
/// [`PixelError::Unsupported`], everything else [`PixelError::Invalid`].
fn run_libjpeg<T>(work: impl FnOnce() -> T) -> Result<T, PixelError> {
    panic::catch_unwind(AssertUnwindSafe(work)).map_err(|payload| {
        let message = panic_message(payload.as_ref());
        if message.starts_with("Unsupported") || message.contains("not supported") {
            PixelError::Unsupported {
                format: SourceFormat::Jpeg.name(),
                detail: message,
            }
        } else {
            PixelError::invalid(SourceFormat::Jpeg, message)
        }
    })
}

/// Returns the message libjpeg's unwinding error handler raised.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("libjpeg failed");
    message
        .trim_start_matches("libjpeg fatal error: ")
        .to_string()
}

/// Returns `hint.target` in the orientation of the stored pixels: the target is upright, and
/// the EXIF orientation may transpose the stored image.
fn stored_target(hint: &DecodeHint, exif: Option<&[u8]>) -> Option<(u32, u32)> {
    let exif = exif.map(|exif| exif.strip_prefix(b"Exif\0\0").unwrap_or(exif));
    let transposed = exif
        .and_then(image::metadata::Orientation::from_exif_chunk)
        .is_some_and(swaps_sides);
    hint.target
        .map(|(w, h)| if transposed { (h, w) } else { (w, h) })
}

/// Returns the DCT scale numerator (over 8) for decoding a `full`-size image that will be
/// resized to `target`. It is the smallest of 1, 2, 4 and 8 whose output still covers the target
/// on both sides, so the final resize never enlarges.
fn scale_numerator(full: (u32, u32), target: Option<(u32, u32)>) -> u8 {
    let Some((target_w, target_h)) = target else {
        return 8;
    };
    for numerator in [1u8, 2, 4] {
        let scaled_w = (u64::from(full.0) * u64::from(numerator)).div_ceil(8);
        let scaled_h = (u64::from(full.1) * u64::from(numerator)).div_ceil(8);
        if scaled_w >= u64::from(target_w) && scaled_h >= u64::from(target_h) {
            return numerator;
        }
    }
    8
}

/// Joins ICC profile chunks in their sequence order. Returns `None` when there are none.
fn join_icc_chunks(mut chunks: Vec<(u8, Vec<u8>)>) -> Option<Vec<u8>> {
    if chunks.is_empty() {
        return None;
    }
    chunks.sort_by_key(|(sequence, _)| *sequence);
    Some(chunks.into_iter().flat_map(|(_, data)| data).collect())
}

fn rgba_image(width: u32, height: u32, pixels: Vec<u8>) -> Result<RgbaImage, PixelError> {
    RgbaImage::from_raw(width, height, pixels).ok_or_else(|| {
        PixelError::invalid(SourceFormat::Jpeg, "decoder returned a short pixel buffer")
    })
}

/// Encodes `image` as a baseline (or progressive) JPEG with 4:4:4 chroma and optimised Huffman
/// tables. Transparent pixels are composited onto white.
///
/// libjpeg-turbo's encoder (as the `mozjpeg` crate builds it) runs with its libjpeg-compatible
/// defaults, without mozjpeg's slower trellis quantisation and scan search.
pub(super) fn encode(
    image: &RgbaImage,
    quality: u8,
    progressive: bool,
    metadata: Option<&Metadata>,
) -> Result<Vec<u8>, PixelError> {
    let (width, height) = image.dimensions();
    if width > u32::from(u16::MAX) || height > u32::from(u16::MAX) {
        return Err(PixelError::UnsupportedOutput {
            format: "JPEG",
            detail: format!("{width}x{height} px exceeds the JPEG limit of 65535 px per side"),
        });
    }
    let flattened;
    let (pixels, color_space) = if super::super::ops::has_alpha(image) {
        flattened = flatten_onto_white(image);
        (flattened.as_slice(), ColorSpace::JCS_RGB)
    } else {
        (image.as_raw().as_slice(), ColorSpace::JCS_EXT_RGBA)
    };

    let encoded = panic::catch_unwind(AssertUnwindSafe(|| -> Result<Vec<u8>, PixelError> {
        let mut compress = mozjpeg::Compress::new(color_space);
        compress.set_fastest_defaults();
        compress.set_size(width as usize, height as usize);
        compress.set_quality(f32::from(quality));
        compress.set_chroma_sampling_pixel_sizes((1, 1), (1, 1));
        compress.set_optimize_coding(true);
        if progressive {
            compress.set_progressive_mode();
        }
        let encode_error = |error: io::Error| PixelError::encode(OutputFormat::Jpeg, error);
        let mut started = compress
            .start_compress(Vec::with_capacity(pixels.len() / 8))
            .map_err(encode_error)?;
        // EXIF and XMP blocks that do not fit one APP segment are left out, because splitting them
        // (Extended XMP) is rarely worth it for a derived image.
        if let Some(metadata) = metadata {
            if let Some(exif) = &metadata.exif {
                if EXIF_SIGNATURE.len() + exif.len() <= MAX_SEGMENT_PAYLOAD {
                    started.write_marker(Marker::APP(1), &[EXIF_SIGNATURE, exif].concat());
                }
            }
            if let Some(xmp) = &metadata.xmp {
                if XMP_SIGNATURE.len() + xmp.len() <= MAX_SEGMENT_PAYLOAD {
                    started.write_marker(Marker::APP(1), &[XMP_SIGNATURE, xmp].concat());
                }
            }
            if let Some(icc) = metadata.icc.as_deref().filter(|icc| !icc.is_empty()) {
                started.write_icc_profile(icc);
            }
        }
        started.write_scanlines(pixels).map_err(encode_error)?;
        started.finish().map_err(encode_error)
    }));
    encoded.unwrap_or_else(|payload| {
        Err(PixelError::encode(
            OutputFormat::Jpeg,
            panic_message(payload.as_ref()),
        ))
    })
}

/// Composites RGBA onto white and returns packed RGB.
fn flatten_onto_white(image: &RgbaImage) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(image.as_raw().len() / 4 * 3);
    for pixel in image.as_raw().chunks_exact(4) {
        let alpha = u32::from(pixel[3]);
        for &channel in &pixel[..3] {
            let value = (u32::from(channel) * alpha + 255 * (255 - alpha) + 127) / 255;
            rgb.push(value as u8);
        }
    }
    rgb
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

    /// Decodes an orientation fixture and resizes it to 300×200 as `w-300` would.
    fn upright_thumbnail(name: &str) -> RgbaImage {
        let decoded = decode_any(
            &fixture(name),
            DecodeHint {
                target: Some((300, 200)),
                ..DecodeHint::default()
            },
        )
        .unwrap();
        assert_eq!(
            (decoded.original_width, decoded.original_height),
            (1800, 1200),
            "{name}"
        );
        ops::resize(&decoded.frames[0].image, 300, 200)
    }

    #[test]
    fn every_exif_orientation_comes_out_upright() {
        let reference = upright_thumbnail("orient-Landscape_1.jpg");
        for n in 2..=8 {
            let name = format!("orient-Landscape_{n}.jpg");
            let thumbnail = upright_thumbnail(&name);
            let difference = mean_abs_diff(&reference, &thumbnail);
            assert!(
                difference < 5.0,
                "{name}: mean absolute difference {difference:.1}"
            );
        }
    }

    #[test]
    fn kept_exif_says_orientation_1() {
        let decoded = decode_fixture("orient-Landscape_6.jpg");
        let exif = decoded.metadata.exif.expect("EXIF kept for md-true");
        assert_eq!(
            image::metadata::Orientation::from_exif_chunk(&exif),
            Some(image::metadata::Orientation::NoTransforms)
        );
    }

    #[test]
    fn shrink_on_load_picks_the_smallest_covering_scale() {
        assert_eq!(scale_numerator((5120, 2880), Some((500, 281))), 1);
        assert_eq!(scale_numerator((5120, 2880), Some((700, 394))), 2);
        assert_eq!(scale_numerator((5120, 2880), Some((2000, 1125))), 4);
        assert_eq!(scale_numerator((5120, 2880), Some((3000, 1688))), 8);
        assert_eq!(scale_numerator((227, 149), Some((100, 66))), 4);
        assert_eq!(scale_numerator((227, 149), None), 8);
        let decoded = decode_any(
            &fixture("orient-Landscape_6.jpg"),
            DecodeHint {
                target: Some((225, 150)),
                ..DecodeHint::default()
            },
        )
        .unwrap();
        assert_eq!((decoded.width, decoded.height), (225, 150));
    }

    #[test]
    fn shrink_on_load_matches_a_full_decode() {
        let bytes = fixture("orient-Landscape_1.jpg");
        let full = decode_any(&bytes, DecodeHint::default()).unwrap();
        let reduced = decode_any(
            &bytes,
            DecodeHint {
                target: Some((225, 150)),
                ..DecodeHint::default()
            },
        )
        .unwrap();
        assert_eq!((reduced.width, reduced.height), (225, 150));
        let from_full = ops::resize(&full.frames[0].image, 225, 150);
        let difference = mean_abs_diff(&from_full, &reduced.frames[0].image);
        assert!(difference < 3.0, "mean absolute difference {difference:.2}");
    }

    #[test]
    fn fast_and_libjpeg_decoders_agree() {
        let hint = DecodeHint::default();
        for name in [
            "rocket.jpg",
            "jpeg-baseline-testorig.jpg",
            "jpeg-progressive-restart-420.jpg",
            "orient-Landscape_5.jpg",
        ] {
            let bytes = fixture(name);
            let fast = read_full_size_fast(&bytes, &hint)
                .unwrap_or_else(|| panic!("{name}: fast path declined"));
            let reference = run_libjpeg(|| read_jpeg(&bytes, &hint)).unwrap().unwrap();
            let (Samples::Rgba(fast_pixels), Samples::Rgba(reference_pixels)) =
                (fast.samples, reference.samples)
            else {
                panic!("{name}: expected RGBA samples");
            };
            let fast = rgba_image(fast.width, fast.height, fast_pixels).unwrap();
            let reference =
                rgba_image(reference.width, reference.height, reference_pixels).unwrap();
            let difference = mean_abs_diff(&fast, &reference);
            assert!(
                difference < 1.0,
                "{name}: decoders differ by {difference:.2}"
            );
        }
    }

    #[test]
    fn fast_decoder_leaves_special_files_to_libjpeg() {
        let hint = DecodeHint::default();
        for name in [
            "cmyk-adobe-plain-quadrants.jpg",
            "jpeg-arithmetic.jpg",
            "jpeg-12bit.jpg",
            "jpeg-lossless-sof3.jpg",
            "trunc-jpeg-baseline.jpg",
            "trunc-jpeg-progressive.jpg",
        ] {
            assert!(
                read_full_size_fast(&fixture(name), &hint).is_none(),
                "{name}"
            );
        }
        let reduced = DecodeHint {
            target: Some((100, 66)),
            ..DecodeHint::default()
        };
        assert!(read_full_size_fast(&fixture("orient-Landscape_1.jpg"), &reduced).is_none());
    }

    #[test]
    fn plain_adobe_cmyk_is_not_inverted() {
        let decoded = decode_fixture("cmyk-adobe-plain-quadrants.jpg");
        let image = &decoded.frames[0].image;
        assert!(decoded.icc_converted);
        let cyan = image.get_pixel(16, 16).0;
        assert!(
            cyan[0] < 80 && cyan[1] > 150 && cyan[2] > 150,
            "cyan {cyan:?}"
        );
        let magenta = image.get_pixel(48, 16).0;
        assert!(
            magenta[0] > 150 && magenta[1] < 80 && magenta[2] > 150,
            "magenta {magenta:?}"
        );
        let black = image.get_pixel(16, 48).0;
        assert!(black[..3].iter().all(|&c| c < 60), "black {black:?}");
        let white = image.get_pixel(48, 48).0;
        assert!(white[..3].iter().all(|&c| c > 230), "white {white:?}");
    }

    #[test]
    fn ycck_without_profile_converts_naively() {
        let decoded = decode_fixture("cmyk-ycck-no-profile.jpg");
        assert_eq!((decoded.width, decoded.height), (500, 333));
        let mean = mean_rgb(&decoded.frames[0].image);
        for (actual, expected) in mean.iter().zip([109.0, 132.0, 110.0]) {
            assert!((actual - expected).abs() <= 20.0, "mean RGB {mean:?}");
        }
    }

    #[test]
    fn adobe_rgb_patches_convert_to_srgb() {
        let decoded = decode_fixture("icc-adobergb-patches.jpg");
        assert!(decoded.icc_converted);
        assert_eq!(decoded.metadata.icc, None);
        let image = &decoded.frames[0].image;
        assert_rgb_near(image.get_pixel(16, 16).0, [0, 161, 0], 6, "green patch");
        assert_rgb_near(image.get_pixel(48, 16).0, [233, 35, 35], 6, "red patch");
        assert_rgb_near(image.get_pixel(16, 48).0, [23, 57, 204], 6, "blue patch");
        assert_rgb_near(image.get_pixel(48, 48).0, [129, 129, 129], 6, "grey patch");
    }

    #[test]
    fn kept_profile_skips_conversion() {
        let decoded = decode_any(
            &fixture("icc-adobergb-patches.jpg"),
            DecodeHint {
                keep_icc_profile: true,
                ..DecodeHint::default()
            },
        )
        .unwrap();
        assert!(!decoded.icc_converted);
        assert!(decoded.metadata.icc.is_some());
        assert_rgb_near(
            decoded.frames[0].image.get_pixel(48, 16).0,
            [200, 40, 40],
            6,
            "raw red",
        );
    }

    #[test]
    fn progressive_with_restart_markers_matches_baseline() {
        let baseline = decode_fixture("jpeg-baseline-testorig.jpg");
        let progressive = decode_fixture("jpeg-progressive-restart-420.jpg");
        let difference = mean_abs_diff(&baseline.frames[0].image, &progressive.frames[0].image);
        assert!(difference < 2.0, "mean absolute difference {difference:.2}");
    }

    #[test]
    fn arithmetic_coding_decodes() {
        let baseline = decode_fixture("jpeg-baseline-testorig.jpg");
        let arithmetic = decode_fixture("jpeg-arithmetic.jpg");
        let difference = mean_abs_diff(&baseline.frames[0].image, &arithmetic.frames[0].image);
        assert!(
            difference < 10.0,
            "mean absolute difference {difference:.2}"
        );
    }

    #[test]
    fn unsupported_and_broken_files_are_errors() {
        for name in ["jpeg-12bit.jpg", "jpeg-lossless-sof3.jpg"] {
            let error = decode_any(&fixture(name), DecodeHint::default()).unwrap_err();
            assert!(
                matches!(error, PixelError::Unsupported { .. }),
                "{name}: {error}"
            );
        }
        for name in [
            "corrupt-jpeg-header.jpg",
            "trunc-jpeg-baseline.jpg",
            "trunc-jpeg-progressive.jpg",
        ] {
            let error = decode_any(&fixture(name), DecodeHint::default()).unwrap_err();
            assert!(error.is_client_error(), "{name}: {error}");
        }
    }

    #[test]
    fn oversized_header_is_rejected() {
        let error = decode_any(
            &fixture("bomb-lottapixel-64250sq.jpg"),
            DecodeHint::default(),
        )
        .unwrap_err();
        assert!(
            matches!(error, PixelError::TooLarge { width: 64250, .. }),
            "{error}"
        );
    }

    #[test]
    fn multiple_exif_segments_decode() {
        let decoded = decode_fixture("meta-multiple-exif-1x1.jpg");
        assert_eq!((decoded.width, decoded.height), (1, 1));
    }

    #[test]
    fn encodes_444_jpeg_without_metadata_by_default() {
        let decoded = decode_fixture("orient-Landscape_6.jpg");
        let bytes = encode_any(
            &decoded.frames,
            None,
            OutputFormat::Jpeg,
            &EncodeOptions::default(),
        )
        .unwrap();
        assert!(bytes.starts_with(&[0xFF, 0xD8, 0xFF]));
        assert!(!bytes
            .windows(EXIF_SIGNATURE.len())
            .any(|w| w == EXIF_SIGNATURE));
        assert!(!bytes
            .windows(ICC_SIGNATURE.len())
            .any(|w| w == ICC_SIGNATURE));
        let again = decode_any(&bytes, DecodeHint::default()).unwrap();
        assert_eq!((again.width, again.height), (1800, 1200));
        let difference = mean_abs_diff(&decoded.frames[0].image, &again.frames[0].image);
        assert!(difference < 3.0, "re-encoded difference {difference:.2}");
    }

    #[test]
    fn encodes_progressive_jpeg_with_kept_metadata() {
        let decoded = decode_fixture("orient-Landscape_6.jpg");
        let options = EncodeOptions {
            progressive: true,
            keep_metadata: Some(decoded.metadata.clone()),
            ..EncodeOptions::default()
        };
        let bytes = encode_any(&decoded.frames, None, OutputFormat::Jpeg, &options).unwrap();
        // SOF2 marks a progressive DCT frame.
        assert!(bytes.windows(2).any(|w| w == [0xFF, 0xC2]));
        let again = decode_any(&bytes, DecodeHint::default()).unwrap();
        assert!(again.metadata.exif.is_some());
        assert_eq!(
            (again.width, again.height),
            (1800, 1200),
            "orientation applied only once"
        );
    }

    #[test]
    fn output_decodes_alike_in_both_decoders() {
        // Optimised Huffman tables are where encoders and decoders have disagreed before, so
        // kura's output must decode alike through zune-jpeg and libjpeg, down to the last row.
        let decoded = decode_fixture("rocket.jpg");
        let image = ops::resize(&decoded.frames[0].image, 333, 221);
        for progressive in [false, true] {
            let bytes = encode(&image, 80, progressive, None).unwrap();
            let hint = DecodeHint::default();
            let fast = read_full_size_fast(&bytes, &hint).expect("fast path declined");
            let reference = run_libjpeg(|| read_jpeg(&bytes, &hint)).unwrap().unwrap();
            let (Samples::Rgba(fast_pixels), Samples::Rgba(reference_pixels)) =
                (fast.samples, reference.samples)
            else {
                panic!("expected RGBA samples");
            };
            let fast = rgba_image(333, 221, fast_pixels).unwrap();
            let reference = rgba_image(333, 221, reference_pixels).unwrap();
            let last_row =
                |image: &RgbaImage| image::GenericImageView::view(image, 0, 220, 333, 1).to_image();
            let whole = mean_abs_diff(&fast, &reference);
            let bottom = mean_abs_diff(&last_row(&fast), &last_row(&reference));
            assert!(
                whole < 1.0 && bottom < 1.0,
                "progressive {progressive}: decoders differ by {whole:.2} (last row {bottom:.2})"
            );
            assert!(mean_abs_diff(&image, &fast) < 4.0);
        }
    }

    #[test]
    fn huffman_tables_fit_the_image() {
        // A flat image needs only a few Huffman codes. The standard tables define 162 AC codes
        // each, so optimised tables take far fewer bytes than the standard ones.
        let image = RgbaImage::from_pixel(64, 64, image::Rgba([40, 90, 200, 255]));
        let bytes = encode(&image, 80, false, None).unwrap();
        let tables_bytes: usize = segments(&bytes)
            .filter(|(marker, _)| *marker == 0xC4)
            .map(|(_, payload)| payload.len())
            .sum();
        assert!(tables_bytes > 0, "no DHT segment");
        assert!(tables_bytes < 100, "DHT segments take {tables_bytes} bytes");
    }

    /// Yields (marker, payload) for each segment before the first scan.
    fn segments(bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
        let mut at = 2;
        std::iter::from_fn(move || {
            if at + 4 > bytes.len() || bytes[at] != 0xFF || bytes[at + 1] == 0xDA {
                return None;
            }
            let marker = bytes[at + 1];
            let length = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
            let payload = bytes.get(at + 4..at + 2 + length)?;
            at += 2 + length;
            Some((marker, payload))
        })
    }

    #[test]
    fn transparency_flattens_onto_white() {
        let image = RgbaImage::from_pixel(8, 8, image::Rgba([0, 0, 0, 0]));
        let bytes = encode(&image, 90, false, None).unwrap();
        let again = decode_any(&bytes, DecodeHint::default()).unwrap();
        assert_rgb_near(
            again.frames[0].image.get_pixel(4, 4).0,
            [255, 255, 255],
            2,
            "flattened",
        );
    }
}
