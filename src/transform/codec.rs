//! Decoding images into RGBA8 sRGB frames and encoding frames into the output formats.
//!
//! The working space of the pixel stage is straight (not premultiplied) RGBA with 8 bits per
//! channel in sRGB. [`decode`] gets every input there: it applies the EXIF orientation, converts
//! embedded ICC profiles (and CMYK) to sRGB, expands palettes, grey and 16-bit samples, and keeps
//! every frame of an animation with its delay. [`encode`] writes frames as JPEG, PNG (APNG when
//! animated), WebP (animated when several frames), AVIF or GIF, without any EXIF, XMP or ICC
//! data unless [`EncodeOptions::keep_metadata`] requests it.
//!
//! JPEG inputs larger than the requested output are decoded at 1/2, 1/4 or 1/8 scale through
//! libjpeg's scaled inverse DCT ("shrink on load"). Entropy decoding still reads every
//! coefficient, but most of the inverse DCT, upsampling and colour conversion work disappears.

mod avif;
mod gif;
mod icc;
mod jpeg;
mod png;
mod webp;

use image::metadata::Orientation;
use image::{DynamicImage, RgbaImage};

/// Default maximum number of pixels of a decoded image, ImageKit's documented 100 MP input limit.
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;
/// Default maximum number of frames of an animation.
pub const DEFAULT_MAX_FRAMES: u32 = 1_000;

/// Decoding limits and the planned output size, known before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeHint {
    /// The size that the first resize of the pipeline scales the upright image to, when the
    /// pipeline starts with a resize. A JPEG is then decoded at the smallest DCT scale whose
    /// result still covers this size on both sides. `None` decodes at full size.
    pub target: Option<(u32, u32)>,
    /// Maximum pixels of the canvas. For an animation it also bounds the sum of the pixels of
    /// all frames, which bounds the memory that decoding uses.
    pub max_pixels: u64,
    /// Maximum number of frames of an animation.
    pub max_frames: u32,
    /// Keep RGB or grey pixels in the colour space of their embedded ICC profile and return the
    /// profile in [`Metadata::icc`], for `cp-true`. CMYK inputs are always converted.
    pub keep_icc_profile: bool,
}

impl Default for DecodeHint {
    fn default() -> Self {
        DecodeHint {
            target: None,
            max_pixels: DEFAULT_MAX_PIXELS,
            max_frames: DEFAULT_MAX_FRAMES,
            keep_icc_profile: false,
        }
    }
}

/// The image formats that [`decode`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    Jpeg,
    Png,
    Gif,
    Webp,
}

impl SourceFormat {
    /// Returns the format of `bytes` from their magic number, or `None` for a format that
    /// [`decode`] does not read.
    pub fn sniff(bytes: &[u8]) -> Option<SourceFormat> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(SourceFormat::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(SourceFormat::Png)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(SourceFormat::Gif)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(SourceFormat::Webp)
        } else {
            None
        }
    }

    /// Returns the format's name for messages.
    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "JPEG",
            SourceFormat::Png => "PNG",
            SourceFormat::Gif => "GIF",
            SourceFormat::Webp => "WebP",
        }
    }
}

/// One frame of a decoded image: straight RGBA8 in sRGB (or in the kept ICC profile's space).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub image: RgbaImage,
    /// Display time in milliseconds. Zero for still images.
    pub delay_ms: u32,
}

impl Frame {
    /// Builds a frame of a still image.
    pub fn still(image: RgbaImage) -> Frame {
        Frame { image, delay_ms: 0 }
    }
}

/// Metadata blocks of the source, as raw payloads without container framing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The TIFF structure of an EXIF block (starting with `II` or `MM`), with the orientation
    /// tag reset to 1 because [`decode`] has already applied it.
    pub exif: Option<Vec<u8>>,
    /// An XMP packet.
    pub xmp: Option<Vec<u8>>,
    /// The ICC profile that describes the frames' pixels. `None` after a conversion to sRGB.
    pub icc: Option<Vec<u8>>,
}

/// A decoded image: one frame for still images, all frames for animations.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Frames of identical size `width`×`height`, each composited onto the full canvas.
    pub frames: Vec<Frame>,
    /// How many times an animation plays (0 = forever). `None` for still images.
    pub loop_count: Option<u16>,
    pub source_format: SourceFormat,
    /// Whether any pixel of any frame is not fully opaque.
    pub has_alpha: bool,
    /// Whether the pixels were converted from an embedded ICC profile or from CMYK to sRGB.
    pub icc_converted: bool,
    /// Size of the frames: upright, and reduced when the JPEG was decoded at a DCT scale.
    pub width: u32,
    pub height: u32,
    /// Upright size of the source at full scale, the `iw`×`ih` of transformation expressions.
    pub original_width: u32,
    pub original_height: u32,
    /// Metadata for [`EncodeOptions::keep_metadata`].
    pub metadata: Metadata,
}

impl Decoded {
    fn from_frames(
        frames: Vec<Frame>,
        loop_count: Option<u16>,
        source_format: SourceFormat,
        icc_converted: bool,
        original_size: (u32, u32),
        metadata: Metadata,
    ) -> Decoded {
        let (width, height) = frames
            .first()
            .map(|frame| frame.image.dimensions())
            .unwrap_or((0, 0));
        // JPEG has no alpha channel, which saves scanning a possibly large opaque image.
        let has_alpha = source_format != SourceFormat::Jpeg
            && frames
                .iter()
                .any(|frame| super::ops::has_alpha(&frame.image));
        Decoded {
            frames,
            loop_count,
            source_format,
            has_alpha,
            icc_converted,
            width,
            height,
            original_width: original_size.0,
            original_height: original_size.1,
            metadata,
        }
    }
}

/// The formats that [`encode`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    Jpeg,
    Png,
    Webp,
    Avif,
    Gif,
}

impl OutputFormat {
    /// Returns the media type for `Content-Type`.
    pub fn mime_type(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Png => "image/png",
            OutputFormat::Webp => "image/webp",
            OutputFormat::Avif => "image/avif",
            OutputFormat::Gif => "image/gif",
        }
    }

    /// Returns whether the format stores an alpha channel (GIF only as a 1-bit mask).
    pub fn supports_alpha(self) -> bool {
        !matches!(self, OutputFormat::Jpeg)
    }

    /// Returns whether the format stores several frames.
    pub fn supports_animation(self) -> bool {
        matches!(
            self,
            OutputFormat::Png | OutputFormat::Webp | OutputFormat::Gif
        )
    }

    fn name(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "JPEG",
            OutputFormat::Png => "PNG",
            OutputFormat::Webp => "WebP",
            OutputFormat::Avif => "AVIF",
            OutputFormat::Gif => "GIF",
        }
    }
}

/// Encoder settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Quality of the lossy encoders (JPEG, lossy WebP, AVIF) from 1 to 100.
    pub quality: u8,
    /// Lossless WebP. PNG and GIF are always lossless apart from GIF's 256-colour palette.
    pub lossless: bool,
    /// Progressive JPEG scans.
    pub progressive: bool,
    /// Metadata to embed. `None` writes none, and so does a field that is `None`. GIF output
    /// never carries metadata.
    pub keep_metadata: Option<Metadata>,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            quality: 80,
            lossless: false,
            progressive: false,
            keep_metadata: None,
        }
    }
}

/// A failure to decode, process or encode pixels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PixelError {
    /// The bytes are in a format that [`decode`] does not read.
    #[error("unrecognised image format: expected JPEG, PNG, GIF or WebP data")]
    UnknownFormat,
    /// A valid file that uses a feature kura does not decode (for example a 12-bit or lossless
    /// JPEG).
    #[error("unsupported {format} image: {detail}")]
    Unsupported {
        format: &'static str,
        detail: String,
    },
    /// Corrupt, truncated or otherwise undecodable data.
    #[error("invalid {format} image: {detail}")]
    Invalid {
        format: &'static str,
        detail: String,
    },
    /// The image declares more pixels than allowed.
    #[error(
        "image of {width}x{height} px ({frames} frame(s)) exceeds the limit of {limit} pixels"
    )]
    TooLarge {
        width: u32,
        height: u32,
        frames: u32,
        limit: u64,
    },
    /// The animation has more frames than allowed.
    #[error("animation has more than the limit of {limit} frames")]
    TooManyFrames { limit: u32 },
    /// The output format cannot carry this image (for example an animation as AVIF).
    #[error("cannot encode as {format}: {detail}")]
    UnsupportedOutput {
        format: &'static str,
        detail: String,
    },
    /// The encoder failed.
    #[error("{format} encoding failed: {detail}")]
    Encode {
        format: &'static str,
        detail: String,
    },
    /// A pixel operation got arguments that do not fit the image, which is a bug in planning.
    #[error("invalid pixel operation: {0}")]
    InvalidOperation(String),
}

impl PixelError {
    /// Returns a stable snake_case code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            PixelError::UnknownFormat => "unsupported_media_type",
            PixelError::Unsupported { .. } => "unsupported_image",
            PixelError::Invalid { .. } => "invalid_image",
            PixelError::TooLarge { .. } | PixelError::TooManyFrames { .. } => "limit_exceeded",
            PixelError::UnsupportedOutput { .. } => "unsupported_output",
            PixelError::Encode { .. } | PixelError::InvalidOperation(_) => "internal_error",
        }
    }

    /// Returns whether the request or the stored file caused the error, as opposed to a bug or
    /// an encoder failure.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            PixelError::Encode { .. } | PixelError::InvalidOperation(_)
        )
    }

    fn invalid(format: SourceFormat, detail: impl std::fmt::Display) -> PixelError {
        PixelError::Invalid {
            format: format.name(),
            detail: detail.to_string(),
        }
    }

    fn encode(format: OutputFormat, detail: impl std::fmt::Display) -> PixelError {
        PixelError::Encode {
            format: format.name(),
            detail: detail.to_string(),
        }
    }
}

/// Decodes `bytes` into upright sRGB RGBA8 frames.
///
/// Fails with [`PixelError::TooLarge`] before decoding pixel data when the declared size breaks
/// `hint.max_pixels`, with [`PixelError::TooManyFrames`] once an animation passes
/// `hint.max_frames`, and with [`PixelError::Invalid`] for corrupt or truncated data.
pub fn decode(bytes: &[u8], hint: DecodeHint) -> Result<Decoded, PixelError> {
    match SourceFormat::sniff(bytes).ok_or(PixelError::UnknownFormat)? {
        SourceFormat::Jpeg => jpeg::decode(bytes, &hint),
        SourceFormat::Png => png::decode(bytes, &hint),
        SourceFormat::Gif => gif::decode(bytes, &hint),
        SourceFormat::Webp => webp::decode(bytes, &hint),
    }
}

/// Returns the upright full-scale size of an image from its headers, without decoding pixels:
/// the same size that [`decode`] reports as `original_width`×`original_height`, because it
/// reads the EXIF orientation the same way. Returns `None` for unreadable headers.
///
/// Geometry planned on this size stays valid for the decoded frames, which is what a caller
/// needs to compute [`DecodeHint::target`] before decoding.
pub fn upright_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let (width, height, exif) = match SourceFormat::sniff(bytes)? {
        SourceFormat::Jpeg => jpeg::header(bytes)?,
        SourceFormat::Png => png::header(bytes)?,
        SourceFormat::Gif => gif::header(bytes)?,
        SourceFormat::Webp => webp::header(bytes)?,
    };
    let (orientation, _) = take_orientation(exif);
    Some(if swaps_sides(orientation) {
        (height, width)
    } else {
        (width, height)
    })
}

/// Encodes `frames` as `format`.
///
/// Several frames become an animation in PNG (APNG), WebP and GIF, playing `loop_count` times
/// (0 = forever, `None` = forever). JPEG encodes only the first frame; AVIF rejects several frames
/// with [`PixelError::UnsupportedOutput`]. JPEG composites any remaining transparency onto white,
/// so callers that want another background flatten first with
/// [`flatten`](super::ops::flatten).
pub fn encode(
    frames: &[Frame],
    loop_count: Option<u16>,
    format: OutputFormat,
    options: &EncodeOptions,
) -> Result<Vec<u8>, PixelError> {
    let first = frames.first().ok_or_else(|| {
        PixelError::InvalidOperation("encode needs at least one frame".to_string())
    })?;
    let size = first.image.dimensions();
    if size.0 == 0 || size.1 == 0 {
        return Err(PixelError::InvalidOperation(format!(
            "cannot encode an image of {}x{} px",
            size.0, size.1
        )));
    }
    if frames.iter().any(|frame| frame.image.dimensions() != size) {
        return Err(PixelError::InvalidOperation(
            "all frames of an animation must have the same size".to_string(),
        ));
    }
    let quality = options.quality.clamp(1, 100);
    let metadata = options.keep_metadata.as_ref();
    let animated = frames.len() > 1;
    match format {
        OutputFormat::Jpeg => jpeg::encode(&first.image, quality, options.progressive, metadata),
        OutputFormat::Png if animated => png::encode_animation(frames, loop_count, metadata),
        OutputFormat::Png => png::encode(&first.image, metadata),
        OutputFormat::Webp if animated => {
            webp::encode_animation(frames, loop_count, quality, options.lossless, metadata)
        }
        OutputFormat::Webp => webp::encode(&first.image, quality, options.lossless, metadata),
        OutputFormat::Avif if animated => Err(PixelError::UnsupportedOutput {
            format: format.name(),
            detail: "AVIF output of an animation is not supported; request WebP, GIF or PNG"
                .to_string(),
        }),
        OutputFormat::Avif => avif::encode(&first.image, quality, metadata),
        OutputFormat::Gif => gif::encode(frames, loop_count),
    }
}

/// Rotates and mirrors `image` so that it displays upright for EXIF orientation `orientation`.
fn apply_orientation(image: RgbaImage, orientation: Orientation) -> RgbaImage {
    if orientation == Orientation::NoTransforms {
        return image;
    }
    let mut dynamic = DynamicImage::ImageRgba8(image);
    dynamic.apply_orientation(orientation);
    dynamic.into_rgba8()
}

/// Converts decoded frames to sRGB with their embedded `profile` (or keeps the profile for the
/// output when `hint.keep_icc_profile` is set), then rotates them upright. Returns whether pixels
/// were converted, and the profile to embed in the output.
fn finish_frames(
    frames: &mut [Frame],
    profile: Option<Vec<u8>>,
    orientation: Orientation,
    hint: &DecodeHint,
) -> (bool, Option<Vec<u8>>) {
    let mut converted = false;
    let mut output_profile = None;
    if let Some(profile) = profile {
        if hint.keep_icc_profile {
            output_profile = Some(profile);
        } else {
            for frame in frames.iter_mut() {
                converted |= icc::rgba_to_srgb(&mut frame.image, &profile);
            }
        }
    }
    for frame in frames.iter_mut() {
        let image = std::mem::take(&mut frame.image);
        frame.image = apply_orientation(image, orientation);
    }
    (converted, output_profile)
}

/// Returns whether `orientation` swaps width and height.
fn swaps_sides(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// Reads the orientation of an EXIF TIFF structure and returns it with a copy of the structure
/// whose orientation tag is 1, so kept metadata cannot rotate the upright pixels again.
///
/// Some writers keep the `Exif\0\0` signature of the JPEG segment in PNG and WebP EXIF chunks,
/// so it is stripped first.
fn take_orientation(exif: Option<Vec<u8>>) -> (Orientation, Option<Vec<u8>>) {
    match exif {
        None => (Orientation::NoTransforms, None),
        Some(mut exif) => {
            if exif.starts_with(b"Exif\0\0") {
                exif.drain(..6);
            }
            let orientation =
                Orientation::remove_from_exif_chunk(&mut exif).unwrap_or(Orientation::NoTransforms);
            (orientation, Some(exif))
        }
    }
}

/// Fails with [`PixelError::TooLarge`] when a canvas of `width`×`height` with `frames` frames
/// breaks the limit of `hint`.
fn check_size(width: u32, height: u32, frames: u32, hint: &DecodeHint) -> Result<(), PixelError> {
    let pixels = u64::from(width) * u64::from(height);
    if width == 0 || height == 0 {
        return Ok(());
    }
    if pixels.saturating_mul(u64::from(frames.max(1))) > hint.max_pixels {
        return Err(PixelError::TooLarge {
            width,
            height,
            frames: frames.max(1),
            limit: hint.max_pixels,
        });
    }
    Ok(())
}

/// Converts a frame delay given as a fraction of milliseconds to whole milliseconds.
fn delay_to_ms(delay: image::Delay) -> u32 {
    let (numerator, denominator) = delay.numer_denom_ms();
    if denominator == 0 {
        return 0;
    }
    ((u64::from(numerator) + u64::from(denominator) / 2) / u64::from(denominator))
        .min(u64::from(u32::MAX)) as u32
}

/// Runs the animation decoder `frames`, enforcing the frame and pixel limits of `hint`.
fn collect_frames(
    frames: image::Frames<'_>,
    format: SourceFormat,
    canvas: (u32, u32),
    hint: &DecodeHint,
) -> Result<Vec<Frame>, PixelError> {
    let mut out = Vec::new();
    for frame in frames {
        let frame = frame.map_err(|error| image_error(format, error))?;
        if out.len() as u64 >= u64::from(hint.max_frames) {
            return Err(PixelError::TooManyFrames {
                limit: hint.max_frames,
            });
        }
        check_size(canvas.0, canvas.1, out.len() as u32 + 1, hint)?;
        let delay_ms = delay_to_ms(frame.delay());
        out.push(Frame {
            image: frame.into_buffer(),
            delay_ms,
        });
    }
    if out.is_empty() {
        return Err(PixelError::invalid(format, "the animation has no frames"));
    }
    Ok(out)
}

/// Converts the `image` crate's loop count to plays, 0 meaning forever.
fn loop_count_of(count: image::metadata::LoopCount) -> u16 {
    match count {
        image::metadata::LoopCount::Infinite => 0,
        image::metadata::LoopCount::Finite(plays) => u16::try_from(plays.get()).unwrap_or(u16::MAX),
    }
}

/// Returns the bounding box `(x, y, width, height)` of the pixels that differ between two
/// same-size frames, or `None` when they are identical. Animation encoders store only this box.
fn changed_bounds(previous: &RgbaImage, next: &RgbaImage) -> Option<(u32, u32, u32, u32)> {
    let width = next.width() as usize;
    let (mut left, mut right, mut top, mut bottom) = (usize::MAX, 0, usize::MAX, 0);
    let rows = previous
        .as_raw()
        .chunks_exact(width * 4)
        .zip(next.as_raw().chunks_exact(width * 4));
    for (y, (old, new)) in rows.enumerate() {
        if old == new {
            continue;
        }
        let first = old
            .chunks_exact(4)
            .zip(new.chunks_exact(4))
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        let last = width
            - 1
            - old
                .chunks_exact(4)
                .rev()
                .zip(new.chunks_exact(4).rev())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
        left = left.min(first);
        right = right.max(last);
        top = top.min(y);
        bottom = y;
    }
    (left != usize::MAX).then(|| {
        (
            left as u32,
            top as u32,
            (right - left + 1) as u32,
            (bottom - top + 1) as u32,
        )
    })
}

/// Maps an `image` crate decoding error to a [`PixelError`].
fn image_error(format: SourceFormat, error: image::ImageError) -> PixelError {
    match error {
        image::ImageError::Unsupported(detail) => PixelError::Unsupported {
            format: format.name(),
            detail: detail.to_string(),
        },
        image::ImageError::Limits(detail) => PixelError::Unsupported {
            format: format.name(),
            detail: format!("decoder limit reached: {detail}"),
        },
        other => PixelError::invalid(format, other),
    }
}

/// Returns `image::Limits` that keep an `image` decoder within `hint`. The allocation limit
/// allows one RGBA8 canvas at 16 bits per channel plus a second canvas for compositing.
fn image_limits(hint: &DecodeHint) -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(hint.max_pixels.saturating_mul(8 * 2));
    limits
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers shared by the pixel tests.

    use image::RgbaImage;

    /// Reads a file from `tests/fixtures`.
    pub fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
    }

    /// Returns the mean absolute difference of the RGB channels of two same-size images.
    pub fn mean_abs_diff(a: &RgbaImage, b: &RgbaImage) -> f64 {
        assert_eq!(
            a.dimensions(),
            b.dimensions(),
            "compared images differ in size"
        );
        let total: u64 = a
            .pixels()
            .zip(b.pixels())
            .map(|(p, q)| {
                (0..3)
                    .map(|c| u64::from(p.0[c].abs_diff(q.0[c])))
                    .sum::<u64>()
            })
            .sum();
        total as f64 / (f64::from(a.width()) * f64::from(a.height()) * 3.0)
    }

    /// Returns the mean RGB of an image.
    pub fn mean_rgb(image: &RgbaImage) -> [f64; 3] {
        let mut sum = [0u64; 3];
        for pixel in image.pixels() {
            for (c, total) in sum.iter_mut().enumerate() {
                *total += u64::from(pixel.0[c]);
            }
        }
        let count = f64::from(image.width()) * f64::from(image.height());
        sum.map(|total| total as f64 / count)
    }

    /// Asserts that each RGB channel of `actual` is within `tolerance` of `expected`.
    pub fn assert_rgb_near(actual: [u8; 4], expected: [u8; 3], tolerance: u8, what: &str) {
        for c in 0..3 {
            assert!(
                actual[c].abs_diff(expected[c]) <= tolerance,
                "{what}: got {actual:?}, expected {expected:?} within {tolerance}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn sniffs_formats_by_magic_number() {
        assert_eq!(
            SourceFormat::sniff(&fixture("jpeg-baseline-testorig.jpg")),
            Some(SourceFormat::Jpeg)
        );
        assert_eq!(
            SourceFormat::sniff(&fixture("png-palette-trns-tbbn3p08.png")),
            Some(SourceFormat::Png)
        );
        assert_eq!(
            SourceFormat::sniff(&fixture("anim-10f-loop.gif")),
            Some(SourceFormat::Gif)
        );
        assert_eq!(
            SourceFormat::sniff(&fixture("anim-10f-loop.webp")),
            Some(SourceFormat::Webp)
        );
        assert_eq!(SourceFormat::sniff(b""), None);
        assert_eq!(
            decode(b"", DecodeHint::default()).unwrap_err(),
            PixelError::UnknownFormat
        );
    }

    #[test]
    fn header_size_matches_the_decoded_size() {
        for name in [
            "orient-Landscape_6.jpg",
            "orient-Landscape_2.jpg",
            "orient-webp-exif6-hopper.webp",
            "orient-png-exif3.png",
            "anim-10f-loop.gif",
            "anim-97f-13x169.webp",
            "anim-apng-20f.png",
            "cmyk-adobe-plain-quadrants.jpg",
            "cmyk-ycck-no-profile.jpg",
            "jpeg-arithmetic.jpg",
            "png16-rgba-basn6a16.png",
        ] {
            let bytes = fixture(name);
            let decoded = decode(&bytes, DecodeHint::default()).unwrap();
            let original = (decoded.original_width, decoded.original_height);
            assert_eq!(upright_size(&bytes), Some(original), "{name}");
        }
        assert_eq!(upright_size(b"GIF89a"), None);
        assert_eq!(upright_size(b"not an image"), None);
    }

    #[test]
    fn finds_the_changed_rectangle() {
        let before = RgbaImage::new(10, 8);
        assert_eq!(changed_bounds(&before, &before), None);
        let mut after = before.clone();
        after.put_pixel(3, 2, image::Rgba([1, 0, 0, 0]));
        after.put_pixel(6, 5, image::Rgba([0, 0, 0, 9]));
        assert_eq!(changed_bounds(&before, &after), Some((3, 2, 4, 4)));
    }

    #[test]
    fn encode_rejects_frames_of_different_sizes() {
        let frames = [
            Frame::still(RgbaImage::new(2, 2)),
            Frame::still(RgbaImage::new(3, 2)),
        ];
        let error = encode(&frames, None, OutputFormat::Gif, &EncodeOptions::default());
        assert!(matches!(error, Err(PixelError::InvalidOperation(_))));
    }

    #[test]
    fn avif_rejects_animations() {
        let frames = [
            Frame::still(RgbaImage::new(2, 2)),
            Frame::still(RgbaImage::new(2, 2)),
        ];
        let error = encode(
            &frames,
            Some(0),
            OutputFormat::Avif,
            &EncodeOptions::default(),
        );
        assert!(matches!(error, Err(PixelError::UnsupportedOutput { .. })));
    }
}
