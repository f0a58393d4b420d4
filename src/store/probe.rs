//! Upload validation: identifies media from its bytes, enforces pixel and frame limits from
//! headers, then decodes images in full.
//!
//! The client's Content-Type and file name are never consulted. Every size read from a file is
//! checked against the bytes that remain before it is used, so a hostile header can cause neither
//! a large allocation nor an unbounded loop.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Seek, SeekFrom};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use image::codecs::gif::GifDecoder;
use image::codecs::png::PngDecoder;
use image::codecs::webp::WebPDecoder;
use image::{
    AnimationDecoder, DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits,
};

// ---------------------------------------------------------------------------------------------
// Media types
// ---------------------------------------------------------------------------------------------

/// A media type that kura stores. APNG is `Png` with more than one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MediaType {
    Png,
    Jpeg,
    Gif,
    Webp,
    Mp4,
    Webm,
}

impl MediaType {
    pub const ALL: [MediaType; 6] = [
        MediaType::Png,
        MediaType::Jpeg,
        MediaType::Gif,
        MediaType::Webp,
        MediaType::Mp4,
        MediaType::Webm,
    ];

    /// Returns the IANA media type, as sent in Content-Type.
    pub fn mime(self) -> &'static str {
        match self {
            MediaType::Png => "image/png",
            MediaType::Jpeg => "image/jpeg",
            MediaType::Gif => "image/gif",
            MediaType::Webp => "image/webp",
            MediaType::Mp4 => "video/mp4",
            MediaType::Webm => "video/webm",
        }
    }

    /// Returns the usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            MediaType::Png => "png",
            MediaType::Jpeg => "jpg",
            MediaType::Gif => "gif",
            MediaType::Webp => "webp",
            MediaType::Mp4 => "mp4",
            MediaType::Webm => "webm",
        }
    }

    pub fn is_image(self) -> bool {
        !matches!(self, MediaType::Mp4 | MediaType::Webm)
    }

    /// Parses a media type such as `image/png; charset=binary`, ignoring parameters and ASCII
    /// case. Also accepts the aliases `image/jpg`, `image/pjpeg` and `image/apng`.
    pub fn from_mime(mime: &str) -> Option<Self> {
        let essence = mime.split(';').next().unwrap_or_default().trim();
        match essence.to_ascii_lowercase().as_str() {
            "image/png" | "image/apng" => Some(MediaType::Png),
            "image/jpeg" | "image/jpg" | "image/pjpeg" => Some(MediaType::Jpeg),
            "image/gif" => Some(MediaType::Gif),
            "image/webp" => Some(MediaType::Webp),
            "video/mp4" => Some(MediaType::Mp4),
            "video/webm" => Some(MediaType::Webm),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sniffing
// ---------------------------------------------------------------------------------------------

/// Number of leading bytes that [`sniff`] needs to classify every type it recognises.
pub const SNIFF_LEN: usize = 512;

/// Content that kura does not store, with a short name for what it appears to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unsupported media type (detected: {detected})")]
pub struct Unsupported {
    /// Short lowercase name: "empty", "svg", "xml", "html", "pdf", "matroska", "tiff", "bmp",
    /// "heif", "avif", "quicktime", "audio", "3gpp", "zip", "text", "unknown" and a few more.
    pub detected: &'static str,
}

/// Sniffs the media type from the first bytes of a file.
///
/// Give it at least [`SNIFF_LEN`] bytes, or the whole file if shorter. Binary signatures are
/// checked before any text rule, so a WebP whose compressed data happens to contain `<svg` is
/// still a WebP.
pub fn sniff(head: &[u8]) -> Result<MediaType, Unsupported> {
    if head.is_empty() {
        return Err(Unsupported { detected: "empty" });
    }
    let detected = match sniff_binary(head) {
        Some(Ok(media_type)) => return Ok(media_type),
        Some(Err(detected)) => detected,
        None => sniff_text(head),
    };
    Err(Unsupported { detected })
}

/// Classifies by magic bytes; `None` means no binary signature matched.
fn sniff_binary(head: &[u8]) -> Option<Result<MediaType, &'static str>> {
    // Four signature bytes are enough for PNG: a PNG whose signature was damaged by a line-ending
    // conversion is then rejected by `probe_file` as corrupt, a more useful error than
    // "unknown type".
    if head.starts_with(b"\x89PNG") {
        return Some(Ok(MediaType::Png));
    }
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(Ok(MediaType::Jpeg));
    }
    if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        return Some(Ok(MediaType::Gif));
    }
    if head.len() >= 12 && head.starts_with(b"RIFF") {
        return Some(match &head[8..12] {
            b"WEBP" => Ok(MediaType::Webp),
            b"AVI " => Err("avi"),
            b"WAVE" => Err("wav"),
            _ => Err("unknown"),
        });
    }
    if head.len() >= 8 {
        match &head[4..8] {
            b"ftyp" => return Some(sniff_ftyp(head)),
            // QuickTime files written before `ftyp` existed start directly with one of these.
            b"moov" | b"mdat" | b"wide" | b"free" | b"skip" | b"pnot" => {
                return Some(Err("quicktime"))
            }
            _ => {}
        }
    }
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some(sniff_ebml(head));
    }
    if is_bmp(head) {
        return Some(Err("bmp"));
    }

    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"%PDF-", "pdf"),
        (b"%!PS", "postscript"),
        (b"PK\x03\x04", "zip"),
        (b"PK\x05\x06", "zip"),
        (b"\x1F\x8B", "gzip"),
        (b"II*\0", "tiff"),
        (b"MM\0*", "tiff"),
        (b"II+\0", "tiff"),
        (b"MM\0+", "tiff"),
        (b"8BPS", "psd"),
        (b"\xFF\x0A", "jxl"),
        (b"\0\0\0\x0CJXL \r\n\x87\n", "jxl"),
        (b"\0\0\0\x0CjP  \r\n\x87\n", "jpeg2000"),
        (b"\xFF\x4F\xFF\x51", "jpeg2000"),
        (b"\0\0\x01\0", "ico"),
        (b"qoif", "qoi"),
        (b"OggS", "ogg"),
        (b"fLaC", "flac"),
        (b"ID3", "mp3"),
        (b"\x7FELF", "executable"),
        (b"MZ", "executable"),
    ];
    SIGNATURES
        .iter()
        .find(|(magic, _)| head.starts_with(magic))
        .map(|&(_, name)| Err(name))
}

/// Recognises a BMP by its "BM" magic plus a known DIB header size, because "BM" alone also
/// starts ordinary text.
fn is_bmp(head: &[u8]) -> bool {
    if head.len() < 18 || !head.starts_with(b"BM") {
        return false;
    }
    let dib_header_size = u32::from_le_bytes([head[14], head[15], head[16], head[17]]);
    matches!(dib_header_size, 12 | 40 | 52 | 56 | 64 | 108 | 124)
}

/// Classifies an ISO base media file by the brands in its `ftyp` box.
fn sniff_ftyp(head: &[u8]) -> Result<MediaType, &'static str> {
    if head.len() < 12 {
        return Err("unknown");
    }
    let box_size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let brands_end = box_size.clamp(16, head.len().max(16)).min(head.len());
    let major = &head[8..12];
    let compatible: Vec<&[u8]> = head
        .get(16..brands_end)
        .unwrap_or_default()
        .chunks_exact(4)
        .collect();
    let has_compatible = |wanted: &[&[u8]]| compatible.iter().any(|brand| wanted.contains(brand));

    match classify_brand(major) {
        // HEIF files name the still-image brand first, so a compatible AVIF brand decides.
        Some(Err("heif")) if has_compatible(&[b"avif", b"avis"]) => Err("avif"),
        Some(result) => result,
        None => compatible
            .iter()
            .find_map(|brand| classify_brand(brand))
            .unwrap_or(Err("unknown")),
    }
}

fn classify_brand(brand: &[u8]) -> Option<Result<MediaType, &'static str>> {
    const MP4_BRANDS: &[&[u8]] = &[
        b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9", b"mp41",
        b"mp42", b"mp71", b"avc1", b"M4V ", b"M4VH", b"M4VP", b"dash", b"msdh", b"msix", b"cmfc",
        b"cmf2", b"mmp4", b"MSNV",
    ];
    const HEIF_BRANDS: &[&[u8]] = &[
        b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"mif2",
        b"msf1",
    ];
    const AUDIO_BRANDS: &[&[u8]] = &[b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "];

    if MP4_BRANDS.contains(&brand) {
        Some(Ok(MediaType::Mp4))
    } else if brand == b"qt  " {
        Some(Err("quicktime"))
    } else if brand == b"avif" || brand == b"avis" {
        Some(Err("avif"))
    } else if HEIF_BRANDS.contains(&brand) {
        Some(Err("heif"))
    } else if AUDIO_BRANDS.contains(&brand) {
        Some(Err("audio"))
    } else if brand.starts_with(b"3gp") || brand.starts_with(b"3g2") {
        Some(Err("3gpp"))
    } else {
        None
    }
}

fn sniff_ebml(head: &[u8]) -> Result<MediaType, &'static str> {
    let mut source = Source::new(Cursor::new(head), head.len() as u64);
    match webm::read_doc_type(&mut source) {
        Ok(doc_type) if doc_type == b"webm" => Ok(MediaType::Webm),
        Ok(doc_type) if doc_type == b"matroska" => Err("matroska"),
        _ => Err("unknown"),
    }
}

/// Classifies content without a binary signature: markup (SVG, HTML, XML), other text, or unknown.
fn sniff_text(head: &[u8]) -> &'static str {
    let text = ascii_view(head);
    if let Some(kind) = classify_markup(&text) {
        return kind;
    }
    if !looks_like_text(&text) {
        return "unknown";
    }
    if contains_ignore_case(&text, b"<svg") {
        "svg"
    } else {
        "text"
    }
}

/// Returns the text with any byte order mark removed. UTF-16 is narrowed to one byte per code
/// unit, with every non-ASCII unit replaced by 0x80, which is enough to find markup.
fn ascii_view(head: &[u8]) -> Cow<'_, [u8]> {
    fn narrow(units: &[u8], little_endian: bool) -> Vec<u8> {
        units
            .chunks_exact(2)
            .map(|pair| {
                let unit = if little_endian {
                    u16::from_le_bytes([pair[0], pair[1]])
                } else {
                    u16::from_be_bytes([pair[0], pair[1]])
                };
                u8::try_from(unit).ok().filter(u8::is_ascii).unwrap_or(0x80)
            })
            .collect()
    }

    if let Some(rest) = head.strip_prefix(b"\xEF\xBB\xBF") {
        Cow::Borrowed(rest)
    } else if let Some(rest) = head.strip_prefix(b"\xFF\xFE") {
        Cow::Owned(narrow(rest, true))
    } else if let Some(rest) = head.strip_prefix(b"\xFE\xFF") {
        Cow::Owned(narrow(rest, false))
    } else if head.len() >= 2 && head[0] == b'<' && head[1] == 0 {
        Cow::Owned(narrow(head, true))
    } else if head.len() >= 2 && head[0] == 0 && head[1] == b'<' {
        Cow::Owned(narrow(head, false))
    } else {
        Cow::Borrowed(head)
    }
}

/// Returns "svg", "html" or "xml" when the text starts with markup, looking past whitespace,
/// comments, processing instructions and a doctype to the root element.
fn classify_markup(text: &[u8]) -> Option<&'static str> {
    let mut pos = skip_whitespace(text, 0);
    let mut saw_markup = false;
    let mut saw_xml_declaration = false;

    // Every pass consumes at least one byte or returns, so the loop ends within `text`.
    while pos < text.len() {
        let rest = &text[pos..];
        if rest.starts_with(b"<!--") {
            let Some(end) = find(&rest[4..], b"-->") else {
                return Some(markup_fallback(text));
            };
            pos += 4 + end + 3;
        } else if rest.starts_with(b"<?") {
            saw_xml_declaration |= starts_with_ignore_case(rest, b"<?xml");
            let Some(end) = find(rest, b"?>") else {
                return Some(markup_fallback(text));
            };
            pos += end + 2;
        } else if starts_with_ignore_case(rest, b"<!doctype") {
            let name_start = skip_whitespace(rest, 9);
            let name = tag_name(&rest[name_start..]);
            if local_name(name).eq_ignore_ascii_case(b"svg") {
                return Some("svg");
            }
            if name.eq_ignore_ascii_case(b"html") {
                return Some("html");
            }
            let Some(end) = doctype_end(rest) else {
                return Some(markup_fallback(text));
            };
            pos += end;
        } else if rest.starts_with(b"<") {
            let name = tag_name(&rest[1..]);
            if name.is_empty() {
                break;
            }
            return Some(root_element_kind(name));
        } else {
            break;
        }
        saw_markup = true;
        pos = skip_whitespace(text, pos);
    }

    if saw_xml_declaration {
        Some("xml")
    } else if saw_markup {
        Some(markup_fallback(text))
    } else {
        None
    }
}

/// Used when the head ends before the root element: an SVG or HTML root later in the file is
/// still named when it is visible, and anything else is XML.
fn markup_fallback(text: &[u8]) -> &'static str {
    if contains_ignore_case(text, b"<svg") {
        "svg"
    } else if contains_ignore_case(text, b"<html") {
        "html"
    } else {
        "xml"
    }
}

fn root_element_kind(name: &[u8]) -> &'static str {
    // Elements that browsers treat as the start of an HTML document.
    const HTML_ROOTS: &[&[u8]] = &[
        b"html", b"head", b"body", b"script", b"iframe", b"h1", b"div", b"font", b"table", b"a",
        b"style", b"title", b"b", b"br", b"p", b"meta", b"link",
    ];
    if local_name(name).eq_ignore_ascii_case(b"svg") {
        "svg"
    } else if HTML_ROOTS.iter().any(|tag| name.eq_ignore_ascii_case(tag)) {
        "html"
    } else {
        "xml"
    }
}

/// Returns the offset just past a doctype, including an internal subset in brackets.
fn doctype_end(doctype: &[u8]) -> Option<usize> {
    let first = doctype.iter().position(|&b| b == b'[' || b == b'>')?;
    if doctype[first] == b'>' {
        return Some(first + 1);
    }
    let subset_end = first + find(&doctype[first..], b"]")?;
    let close = subset_end + doctype[subset_end..].iter().position(|&b| b == b'>')?;
    Some(close + 1)
}

fn tag_name(text: &[u8]) -> &[u8] {
    let len = text
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_' | b'.'))
        .count();
    &text[..len]
}

/// Strips an XML namespace prefix, so `svg:svg` is recognised as `svg`.
fn local_name(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&b| b == b':') {
        Some(colon) => &name[colon + 1..],
        None => name,
    }
}

fn skip_whitespace(text: &[u8], mut pos: usize) -> usize {
    while pos < text.len() && text[pos].is_ascii_whitespace() {
        pos += 1;
    }
    pos
}

fn looks_like_text(text: &[u8]) -> bool {
    text.iter()
        .all(|&b| b >= 0x80 || (b >= 0x20 && b != 0x7F) || b"\t\n\r\x0C\x1B".contains(&b))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn starts_with_ignore_case(text: &[u8], prefix: &[u8]) -> bool {
    text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn contains_ignore_case(text: &[u8], needle: &[u8]) -> bool {
    text.windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

// ---------------------------------------------------------------------------------------------
// Limits, results and errors
// ---------------------------------------------------------------------------------------------

/// Cap on the pixels decoded for one animation (canvas pixels × frames), as a multiple of
/// [`ProbeLimits::max_source_pixels`]. Decoders draw every frame onto a full canvas, so a few
/// one-pixel frames on a huge canvas cost as much as full-size frames.
///
/// With a 100-megapixel limit this allows 1 gigapixel, for example 480 frames at 1920x1080. A
/// release build of `image` 0.25 composited GIF frames at 2 to 4 ns a pixel when timed on one
/// AMD EPYC core (a 2000x2000 GIF with 100 one-pixel frames, and a 10000x10000 one with 3).
pub const ANIMATION_PIXEL_BUDGET: u64 = 10;

/// Limits checked from headers before any pixel buffer is allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeLimits {
    /// Maximum width × height of an image canvas, an animation frame or a video frame.
    pub max_source_pixels: u64,
    /// Maximum number of frames in an animated GIF, APNG or WebP.
    pub max_frames: u32,
}

impl ProbeLimits {
    fn check_pixels(&self, width: u64, height: u64) -> Result<(), ProbeError> {
        if width.saturating_mul(height) > self.max_source_pixels {
            return Err(ProbeError::TooManyPixels {
                width,
                height,
                limit: self.max_source_pixels,
            });
        }
        Ok(())
    }

    /// Checks the frame count against [`ProbeLimits::max_frames`] and against the animation
    /// pixel budget, which allows fewer frames on a larger canvas.
    fn check_animation(&self, header: &ImageHeader) -> Result<(), ProbeError> {
        let canvas_pixels = u64::from(header.width) * u64::from(header.height);
        let budget = self
            .max_source_pixels
            .saturating_mul(ANIMATION_PIXEL_BUDGET);
        let allowed = (budget / canvas_pixels.max(1)).min(u64::from(self.max_frames));
        if u64::from(header.frames) > allowed {
            return Err(ProbeError::TooManyFrames {
                frames: header.frames.into(),
                // At most `max_frames`, so it fits.
                limit: allowed as u32,
            });
        }
        Ok(())
    }

    fn check_frames(&self, frames: u64) -> Result<(), ProbeError> {
        if frames > u64::from(self.max_frames) {
            return Err(ProbeError::TooManyFrames {
                frames,
                limit: self.max_frames,
            });
        }
        Ok(())
    }
}

/// Measurements of a validated file. Images have width, height and frames (1 for a still
/// image). Videos have width, height and, when the container declares it, duration.
///
/// Images report the upright size, after the EXIF orientation, as browsers show them and as
/// transformations measure them. Animations report their canvas size. Videos report the display
/// size: MP4 `tkhd` (which includes the sample aspect ratio and a 90° rotation) or WebM
/// DisplayWidth/DisplayHeight, falling back to the coded size when those are absent.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaInfo {
    pub media_type: MediaType,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frames: Option<u32>,
    pub duration_secs: Option<f64>,
}

/// Reason for rejecting an upload of a supported type.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("the file is corrupt or truncated: {detail}")]
    Corrupt { detail: String },
    #[error("the media is {width}x{height} pixels, over the limit of {limit} pixels")]
    TooManyPixels { width: u64, height: u64, limit: u64 },
    /// `limit` is [`ProbeLimits::max_frames`], or fewer on a canvas so large that
    /// [`ANIMATION_PIXEL_BUDGET`] allows fewer frames.
    #[error(
        "the animation has {frames} frames, over the limit of {limit} frames for its canvas size"
    )]
    TooManyFrames { frames: u64, limit: u32 },
    #[error("the file uses a coding that kura cannot decode: {detail}")]
    UnsupportedCoding { detail: String },
    #[error("failed to read the uploaded file: {0}")]
    Io(#[from] io::Error),
}

impl ProbeError {
    /// Returns the stable error code used in API responses.
    pub fn code(&self) -> &'static str {
        match self {
            ProbeError::Corrupt { .. } => "corrupt_media",
            ProbeError::TooManyPixels { .. } => "too_many_pixels",
            ProbeError::TooManyFrames { .. } => "too_many_frames",
            ProbeError::UnsupportedCoding { .. } => "unsupported_coding",
            ProbeError::Io(_) => "io_error",
        }
    }
}

fn corrupt(detail: impl Into<String>) -> ProbeError {
    ProbeError::Corrupt {
        detail: detail.into(),
    }
}

fn truncated(structure: &str) -> ProbeError {
    corrupt(format!("{structure} is truncated"))
}

fn unsupported_coding(detail: impl Into<String>) -> ProbeError {
    ProbeError::UnsupportedCoding {
        detail: detail.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------------------------

/// Validates the file at `path`, already sniffed as `media_type`, and measures it.
///
/// Blocking, so run it on a blocking thread. Limits are checked from headers first. Images are
/// then decoded in full, frame by frame for animations, to reject corrupt or truncated data.
/// Videos are checked at the container level only, and no video frame is decoded.
pub fn probe_file(
    path: &Path,
    media_type: MediaType,
    limits: &ProbeLimits,
) -> Result<MediaInfo, ProbeError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    probe_reader(BufReader::new(file), len, media_type, limits)
}

fn probe_reader<R: BufRead + Seek>(
    reader: R,
    len: u64,
    media_type: MediaType,
    limits: &ProbeLimits,
) -> Result<MediaInfo, ProbeError> {
    let mut source = Source::new(reader, len);
    let header = match media_type {
        MediaType::Mp4 => return mp4::probe(&mut source, limits),
        MediaType::Webm => return webm::probe(&mut source, limits),
        MediaType::Png => read_png_header(&mut source, limits)?,
        MediaType::Jpeg => read_jpeg_header(&mut source, limits)?,
        MediaType::Gif => read_gif_header(&mut source, limits)?,
        MediaType::Webp => read_webp_header(&mut source, limits)?,
    };

    limits.check_animation(&header)?;

    let mut reader = source.into_inner();
    reader.seek(SeekFrom::Start(0))?;
    // The decoders are third-party code fed untrusted bytes, so a panic in one rejects the upload
    // instead of failing the request.
    let decoded = panic::catch_unwind(AssertUnwindSafe(|| {
        decode_image(reader, media_type, &header, limits)
    }));
    let decoded = decoded.map_err(|_| {
        corrupt(format!(
            "the {} decoder panicked on this file",
            format_name(media_type)
        ))
    })??;
    let (width, height) = if decoded.transposed {
        (header.height, header.width)
    } else {
        (header.width, header.height)
    };
    Ok(MediaInfo {
        media_type,
        width: Some(width),
        height: Some(height),
        frames: Some(decoded.frames),
        duration_secs: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Bounded reading
// ---------------------------------------------------------------------------------------------

/// Reader that tracks its position against the file length, so that every declared size can be
/// checked against the bytes that remain before anything is read or skipped.
struct Source<R> {
    reader: R,
    pos: u64,
    len: u64,
}

impl<R: BufRead + Seek> Source<R> {
    fn new(reader: R, len: u64) -> Self {
        Source {
            reader,
            pos: 0,
            len,
        }
    }

    fn into_inner(self) -> R {
        self.reader
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// Reads exactly `buf.len()` bytes. `structure` names what is being read, for the error raised
    /// when the file ends first.
    fn read_exact(&mut self, buf: &mut [u8], structure: &str) -> Result<(), ProbeError> {
        if buf.len() as u64 > self.remaining() {
            return Err(truncated(structure));
        }
        self.reader
            .read_exact(buf)
            .map_err(|err| match err.kind() {
                io::ErrorKind::UnexpectedEof => truncated(structure),
                _ => ProbeError::Io(err),
            })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn read_array<const N: usize>(&mut self, structure: &str) -> Result<[u8; N], ProbeError> {
        let mut buf = [0; N];
        self.read_exact(&mut buf, structure)?;
        Ok(buf)
    }

    fn read_u8(&mut self, structure: &str) -> Result<u8, ProbeError> {
        Ok(self.read_array::<1>(structure)?[0])
    }

    fn read_u16_be(&mut self, structure: &str) -> Result<u16, ProbeError> {
        Ok(u16::from_be_bytes(self.read_array(structure)?))
    }

    fn read_u32_be(&mut self, structure: &str) -> Result<u32, ProbeError> {
        Ok(u32::from_be_bytes(self.read_array(structure)?))
    }

    fn read_u64_be(&mut self, structure: &str) -> Result<u64, ProbeError> {
        Ok(u64::from_be_bytes(self.read_array(structure)?))
    }

    fn read_u16_le(&mut self, structure: &str) -> Result<u16, ProbeError> {
        Ok(u16::from_le_bytes(self.read_array(structure)?))
    }

    fn read_u32_le(&mut self, structure: &str) -> Result<u32, ProbeError> {
        Ok(u32::from_le_bytes(self.read_array(structure)?))
    }

    /// Skips `count` bytes, failing if the file ends first.
    fn skip(&mut self, count: u64, structure: &str) -> Result<(), ProbeError> {
        if count > self.remaining() {
            return Err(truncated(structure));
        }
        // `count` fits in i64 because it is at most the file length.
        self.reader.seek_relative(count as i64)?;
        self.pos += count;
        Ok(())
    }

    fn seek_to(&mut self, pos: u64, structure: &str) -> Result<(), ProbeError> {
        if pos > self.len {
            return Err(truncated(structure));
        }
        if pos != self.pos {
            self.reader.seek(SeekFrom::Start(pos))?;
            self.pos = pos;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Image headers
// ---------------------------------------------------------------------------------------------

/// Canvas size and frame count read from an image header, before any pixel data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ImageHeader {
    width: u32,
    height: u32,
    frames: u32,
    animated: bool,
}

const PNG_SIGNATURE: [u8; 8] = *b"\x89PNG\r\n\x1a\n";

/// The PNG specification caps chunk lengths, widths and heights at 2^31 - 1.
const PNG_MAX_VALUE: u32 = i32::MAX as u32;

/// Reads IHDR, then walks the chunks before the first IDAT for an APNG `acTL`.
fn read_png_header<R: BufRead + Seek>(
    source: &mut Source<R>,
    limits: &ProbeLimits,
) -> Result<ImageHeader, ProbeError> {
    let signature = source.read_array::<8>("PNG signature")?;
    if signature != PNG_SIGNATURE {
        return Err(corrupt(
            "the PNG signature is damaged, as happens when a file is transferred in text mode; \
             upload the original file",
        ));
    }

    let ihdr_len = source.read_u32_be("PNG IHDR chunk")?;
    let ihdr_type = source.read_array::<4>("PNG IHDR chunk")?;
    if &ihdr_type != b"IHDR" || ihdr_len != 13 {
        return Err(corrupt("the PNG does not start with a valid IHDR chunk"));
    }
    let width = source.read_u32_be("PNG IHDR chunk")?;
    let height = source.read_u32_be("PNG IHDR chunk")?;
    source.skip(5 + 4, "PNG IHDR chunk")?;
    if width == 0 || height == 0 || width > PNG_MAX_VALUE || height > PNG_MAX_VALUE {
        return Err(corrupt(format!(
            "the PNG declares an invalid size {width}x{height}"
        )));
    }
    limits.check_pixels(width.into(), height.into())?;

    let mut header = ImageHeader {
        width,
        height,
        frames: 1,
        animated: false,
    };
    // Each pass consumes at least 12 bytes, so the walk ends with the file.
    loop {
        if source.remaining() == 0 {
            return Err(corrupt("the PNG ends before its first IDAT chunk"));
        }
        let len = source.read_u32_be("PNG chunk header")?;
        let kind = source.read_array::<4>("PNG chunk header")?;
        if len > PNG_MAX_VALUE {
            return Err(corrupt("a PNG chunk declares a length over 2^31 - 1"));
        }
        match &kind {
            b"IDAT" => return Ok(header),
            b"IEND" => return Err(corrupt("the PNG has no IDAT chunk (no image data)")),
            b"acTL" if len == 8 => {
                let num_frames = source.read_u32_be("PNG acTL chunk")?;
                source.skip(4 + 4, "PNG acTL chunk")?;
                if num_frames == 0 {
                    return Err(corrupt("the APNG acTL chunk declares 0 frames"));
                }
                limits.check_frames(num_frames.into())?;
                header.frames = num_frames;
                header.animated = true;
            }
            _ => source.skip(u64::from(len) + 4, "PNG chunk")?,
        }
    }
}

/// Walks the JPEG marker segments to the first frame header (SOFn), then on through every scan to
/// EOI, so that a truncated file is detected even though the decoder accepts one silently.
fn read_jpeg_header<R: BufRead + Seek>(
    source: &mut Source<R>,
    limits: &ProbeLimits,
) -> Result<ImageHeader, ProbeError> {
    if source.read_array::<2>("JPEG SOI marker")? != [0xFF, 0xD8] {
        return Err(corrupt("the JPEG does not start with an SOI marker"));
    }

    let mut size: Option<(u32, u32)> = None;
    let mut pending_marker: Option<u8> = None;
    // Every pass consumes at least one byte, so the walk ends with the file.
    loop {
        let marker = match pending_marker.take() {
            Some(marker) => marker,
            None => next_jpeg_marker(source)?,
        };
        match marker {
            0xD9 => break,
            // Standalone markers carry no length field.
            0x01 | 0xD0..=0xD7 => continue,
            0xD8 => return Err(corrupt("the JPEG has a second SOI marker before EOI")),
            _ => {}
        }

        let segment_len = source.read_u16_be("JPEG marker segment")?;
        if segment_len < 2 {
            return Err(corrupt(format!(
                "JPEG marker {marker:#04X} declares a length of {segment_len}"
            )));
        }
        let payload_len = u64::from(segment_len - 2);

        if is_jpeg_sof(marker) {
            if size.is_some() {
                return Err(corrupt("the JPEG has more than one frame header (SOF)"));
            }
            if payload_len < 6 {
                return Err(corrupt("the JPEG frame header (SOF) is too short"));
            }
            let precision = source.read_u8("JPEG frame header")?;
            let height = source.read_u16_be("JPEG frame header")?;
            let width = source.read_u16_be("JPEG frame header")?;
            source.skip(payload_len - 5, "JPEG frame header")?;
            limits.check_pixels(width.into(), height.into())?;
            check_jpeg_coding(marker, precision)?;
            if height == 0 {
                return Err(unsupported_coding(
                    "JPEG height defined by a DNL marker after the first scan",
                ));
            }
            if width == 0 {
                return Err(corrupt("the JPEG frame header declares a width of 0"));
            }
            size = Some((width.into(), height.into()));
        } else if marker == 0xDA {
            if size.is_none() {
                return Err(corrupt(
                    "the JPEG has a scan (SOS) before its frame header (SOF)",
                ));
            }
            source.skip(payload_len, "JPEG scan header")?;
            pending_marker = Some(skip_jpeg_entropy_coded_data(source)?);
        } else {
            source.skip(payload_len, "JPEG marker segment")?;
        }
    }

    let Some((width, height)) = size else {
        return Err(corrupt("the JPEG has no frame header (SOF)"));
    };
    Ok(ImageHeader {
        width,
        height,
        frames: 1,
        animated: false,
    })
}

/// Reads the next marker code, skipping 0xFF fill bytes. Stray bytes between segments are
/// skipped as well, as libjpeg does with a warning.
fn next_jpeg_marker<R: BufRead + Seek>(source: &mut Source<R>) -> Result<u8, ProbeError> {
    const STRUCTURE: &str = "JPEG (end of file before the EOI marker)";
    while source.read_u8(STRUCTURE)? != 0xFF {}
    loop {
        match source.read_u8(STRUCTURE)? {
            0xFF => continue,
            // 0xFF00 is a stuffed data byte, not a marker.
            0x00 => while source.read_u8(STRUCTURE)? != 0xFF {},
            marker => return Ok(marker),
        }
    }
}

fn is_jpeg_sof(marker: u8) -> bool {
    // 0xC4 (DHT), 0xC8 (reserved) and 0xCC (DAC) sit in the SOF range but are not frame headers.
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

/// Accepts the processes that the `image` crate's JPEG decoder (zune-jpeg) supports: 8-bit
/// baseline, extended sequential and progressive Huffman coding.
fn check_jpeg_coding(marker: u8, precision: u8) -> Result<(), ProbeError> {
    const ADVICE: &str = "Re-encode it as a baseline or progressive 8-bit JPEG.";
    let process = match marker {
        0xC3 => Some("lossless JPEG (SOF3)"),
        0xC5..=0xC7 => Some("hierarchical JPEG"),
        0xC9..=0xCB => Some("arithmetic-coded JPEG"),
        0xCD..=0xCF => Some("hierarchical arithmetic-coded JPEG"),
        _ => None,
    };
    if let Some(process) = process {
        return Err(unsupported_coding(format!("{process}. {ADVICE}")));
    }
    if precision != 8 {
        return Err(unsupported_coding(format!(
            "JPEG with {precision}-bit samples. {ADVICE}"
        )));
    }
    Ok(())
}

/// Skips the entropy-coded data that follows a scan header and returns the marker that ends it.
fn skip_jpeg_entropy_coded_data<R: BufRead + Seek>(
    source: &mut Source<R>,
) -> Result<u8, ProbeError> {
    const STRUCTURE: &str = "JPEG scan data (end of file before the EOI marker)";
    // NOTE: a JPEG that lacks only its EOI marker is rejected too, although libjpeg decodes such
    // a file with a warning.
    loop {
        let buf = source.reader.fill_buf()?;
        if buf.is_empty() {
            return Err(truncated(STRUCTURE));
        }
        let (consumed, found) = match buf.iter().position(|&b| b == 0xFF) {
            Some(index) => (index + 1, true),
            None => (buf.len(), false),
        };
        source.reader.consume(consumed);
        source.pos += consumed as u64;
        if !found {
            continue;
        }

        let mut next = source.read_u8(STRUCTURE)?;
        while next == 0xFF {
            next = source.read_u8(STRUCTURE)?;
        }
        // A stuffed zero or a restart marker continues the scan.
        if next != 0x00 && !(0xD0..=0xD7).contains(&next) {
            return Ok(next);
        }
    }
}

/// Reads the GIF logical screen, then walks every block to count image descriptors and check each
/// frame's size, skipping the LZW data sub-block by sub-block without decoding it.
fn read_gif_header<R: BufRead + Seek>(
    source: &mut Source<R>,
    limits: &ProbeLimits,
) -> Result<ImageHeader, ProbeError> {
    let signature = source.read_array::<6>("GIF header")?;
    if &signature != b"GIF87a" && &signature != b"GIF89a" {
        return Err(corrupt("the GIF signature is invalid"));
    }
    let width = source.read_u16_le("GIF logical screen descriptor")?;
    let height = source.read_u16_le("GIF logical screen descriptor")?;
    let flags = source.read_u8("GIF logical screen descriptor")?;
    source.skip(2, "GIF logical screen descriptor")?;
    if width == 0 || height == 0 {
        return Err(corrupt(format!(
            "the GIF logical screen is {width}x{height}"
        )));
    }
    limits.check_pixels(width.into(), height.into())?;
    if flags & 0x80 != 0 {
        source.skip(gif_color_table_len(flags), "GIF global color table")?;
    }

    let mut frames: u64 = 0;
    // Every pass consumes at least one byte, so the walk ends with the file.
    while source.remaining() > 0 {
        match source.read_u8("GIF block")? {
            0x2C => {
                source.skip(4, "GIF image descriptor")?;
                let frame_width = source.read_u16_le("GIF image descriptor")?;
                let frame_height = source.read_u16_le("GIF image descriptor")?;
                let frame_flags = source.read_u8("GIF image descriptor")?;
                // Each frame is decoded into its own buffer before being clipped to the screen.
                limits.check_pixels(frame_width.into(), frame_height.into())?;
                if frame_flags & 0x80 != 0 {
                    source.skip(gif_color_table_len(frame_flags), "GIF local color table")?;
                }
                source.skip(1, "GIF image data")?;
                skip_gif_sub_blocks(source, "GIF image data")?;
                frames += 1;
            }
            0x21 => {
                source.skip(1, "GIF extension")?;
                skip_gif_sub_blocks(source, "GIF extension")?;
            }
            // The trailer, or bytes after the last block that decoders ignore.
            _ => break,
        }
    }

    if frames == 0 {
        return Err(corrupt("the GIF contains no image"));
    }
    limits.check_frames(frames)?;
    Ok(ImageHeader {
        width: width.into(),
        height: height.into(),
        frames: frames as u32,
        animated: frames > 1,
    })
}

fn gif_color_table_len(flags: u8) -> u64 {
    3 << ((flags & 0x07) + 1)
}

fn skip_gif_sub_blocks<R: BufRead + Seek>(
    source: &mut Source<R>,
    structure: &str,
) -> Result<(), ProbeError> {
    loop {
        let len = source.read_u8(structure)?;
        if len == 0 {
            return Ok(());
        }
        source.skip(len.into(), structure)?;
    }
}

/// Reads the WebP canvas from the VP8, VP8L or VP8X chunk. For VP8X files it walks the remaining
/// chunks to count ANMF frames and check that each frame lies on the canvas.
fn read_webp_header<R: BufRead + Seek>(
    source: &mut Source<R>,
    limits: &ProbeLimits,
) -> Result<ImageHeader, ProbeError> {
    let riff = source.read_array::<4>("WebP RIFF header")?;
    let riff_size = source.read_u32_le("WebP RIFF header")?;
    let form = source.read_array::<4>("WebP RIFF header")?;
    if &riff != b"RIFF" || &form != b"WEBP" {
        return Err(corrupt("the WebP RIFF header is invalid"));
    }
    let riff_end = 8 + u64::from(riff_size);
    if riff_end > source.len {
        return Err(truncated("WebP RIFF container"));
    }

    let first = read_webp_chunk_header(source, riff_end)?;
    let (width, height) = match &first.kind {
        b"VP8 " | b"VP8L" => {
            let (width, height) = read_webp_bitstream_size(source, &first)?;
            limits.check_pixels(width.into(), height.into())?;
            return Ok(ImageHeader {
                width,
                height,
                frames: 1,
                animated: false,
            });
        }
        b"VP8X" => {
            if first.size < 10 {
                return Err(corrupt("the WebP VP8X chunk is too short"));
            }
            let flags = source.read_u8("WebP VP8X chunk")?;
            source.skip(3, "WebP VP8X chunk")?;
            let width = read_u24_le(source, "WebP VP8X chunk")? + 1;
            let height = read_u24_le(source, "WebP VP8X chunk")? + 1;
            limits.check_pixels(width.into(), height.into())?;
            source.seek_to(first.end, "WebP VP8X chunk")?;
            if flags & 0x02 != 0 {
                let frames = count_webp_frames(source, riff_end, width, height, limits)?;
                return Ok(ImageHeader {
                    width,
                    height,
                    frames,
                    animated: true,
                });
            }
            (width, height)
        }
        other => {
            return Err(corrupt(format!(
                "the first WebP chunk is {:?}; expected VP8, VP8L or VP8X",
                String::from_utf8_lossy(other)
            )))
        }
    };

    // A still image with a VP8X header: its bitstream must match the canvas.
    while source.pos < riff_end {
        let chunk = read_webp_chunk_header(source, riff_end)?;
        if &chunk.kind == b"VP8 " || &chunk.kind == b"VP8L" {
            let bitstream_size = read_webp_bitstream_size(source, &chunk)?;
            if bitstream_size != (width, height) {
                return Err(corrupt(format!(
                    "the WebP bitstream is {}x{} but the canvas is {width}x{height}",
                    bitstream_size.0, bitstream_size.1
                )));
            }
            return Ok(ImageHeader {
                width,
                height,
                frames: 1,
                animated: false,
            });
        }
        source.seek_to(chunk.end, "WebP chunk")?;
    }
    Err(corrupt("the WebP has no image data (no VP8 or VP8L chunk)"))
}

struct WebpChunk {
    kind: [u8; 4],
    size: u32,
    /// Offset just past the payload and its padding byte.
    end: u64,
}

fn read_webp_chunk_header<R: BufRead + Seek>(
    source: &mut Source<R>,
    container_end: u64,
) -> Result<WebpChunk, ProbeError> {
    let kind = source.read_array::<4>("WebP chunk header")?;
    let size = source.read_u32_le("WebP chunk header")?;
    let data_end = source.pos + u64::from(size);
    if data_end > container_end {
        return Err(truncated(&format!(
            "WebP {} chunk",
            String::from_utf8_lossy(&kind).trim_end()
        )));
    }
    // Chunks are padded to an even length, but some writers leave out the last padding byte.
    let end = (data_end + u64::from(size & 1)).min(container_end);
    Ok(WebpChunk { kind, size, end })
}

/// Reads the frame size from the start of a VP8 (lossy) or VP8L (lossless) chunk payload.
fn read_webp_bitstream_size<R: BufRead + Seek>(
    source: &mut Source<R>,
    chunk: &WebpChunk,
) -> Result<(u32, u32), ProbeError> {
    if &chunk.kind == b"VP8L" {
        if chunk.size < 5 {
            return Err(corrupt("the WebP VP8L chunk is too short"));
        }
        if source.read_u8("WebP VP8L header")? != 0x2F {
            return Err(corrupt("the WebP VP8L signature is invalid"));
        }
        let bits = source.read_u32_le("WebP VP8L header")?;
        if bits >> 29 != 0 {
            return Err(corrupt("the WebP VP8L version is not 0"));
        }
        let width = (bits & 0x3FFF) + 1;
        let height = ((bits >> 14) & 0x3FFF) + 1;
        return Ok((width, height));
    }

    if chunk.size < 10 {
        return Err(corrupt("the WebP VP8 chunk is too short"));
    }
    let frame_tag = source.read_array::<3>("WebP VP8 header")?;
    if frame_tag[0] & 0x01 != 0 {
        return Err(corrupt(
            "the WebP VP8 bitstream does not start with a key frame",
        ));
    }
    if source.read_array::<3>("WebP VP8 header")? != [0x9D, 0x01, 0x2A] {
        return Err(corrupt("the WebP VP8 start code is invalid"));
    }
    // The top two bits of each dimension are an upscaling hint, not part of the size.
    let width = u32::from(source.read_u16_le("WebP VP8 header")? & 0x3FFF);
    let height = u32::from(source.read_u16_le("WebP VP8 header")? & 0x3FFF);
    if width == 0 || height == 0 {
        return Err(corrupt(format!("the WebP VP8 frame is {width}x{height}")));
    }
    Ok((width, height))
}

fn read_u24_le<R: BufRead + Seek>(
    source: &mut Source<R>,
    structure: &str,
) -> Result<u32, ProbeError> {
    let [a, b, c] = source.read_array::<3>(structure)?;
    Ok(u32::from_le_bytes([a, b, c, 0]))
}

fn count_webp_frames<R: BufRead + Seek>(
    source: &mut Source<R>,
    riff_end: u64,
    canvas_width: u32,
    canvas_height: u32,
    limits: &ProbeLimits,
) -> Result<u32, ProbeError> {
    let mut frames: u64 = 0;
    // Every chunk is at least 8 bytes, so the walk ends with the container.
    while source.pos + 8 <= riff_end {
        let chunk = read_webp_chunk_header(source, riff_end)?;
        if &chunk.kind == b"ANMF" {
            if chunk.size < 16 {
                return Err(corrupt("a WebP ANMF chunk is too short"));
            }
            // Offsets are stored divided by two.
            let x = u64::from(read_u24_le(source, "WebP ANMF chunk")?) * 2;
            let y = u64::from(read_u24_le(source, "WebP ANMF chunk")?) * 2;
            let width = u64::from(read_u24_le(source, "WebP ANMF chunk")?) + 1;
            let height = u64::from(read_u24_le(source, "WebP ANMF chunk")?) + 1;
            if x + width > u64::from(canvas_width) || y + height > u64::from(canvas_height) {
                return Err(corrupt(format!(
                    "WebP animation frame {} ({width}x{height} at {x},{y}) extends past the \
                     {canvas_width}x{canvas_height} canvas",
                    frames + 1
                )));
            }
            frames += 1;
        }
        source.seek_to(chunk.end, "WebP chunk")?;
    }

    if frames == 0 {
        return Err(corrupt(
            "the animated WebP contains no frames (no ANMF chunk)",
        ));
    }
    limits.check_frames(frames)?;
    Ok(frames as u32)
}

// ---------------------------------------------------------------------------------------------
// Image decoding
// ---------------------------------------------------------------------------------------------

/// Headroom for decoder state beyond the pixel buffers: Huffman and LZW tables, zlib windows,
/// ICC profiles and text chunks.
const DECODER_OVERHEAD_BYTES: u64 = 64 * 1024 * 1024;

/// Limits for the `image` decoders: the exact canvas size read from the header, and a memory
/// budget derived from it.
fn decoder_limits(header: &ImageHeader) -> Limits {
    // 16 bytes a pixel covers the largest set of buffers alive at once: an RGBA16 still image
    // (8 bytes), or the two RGBA8 canvases of an APNG plus one frame held both raw and as RGBA8.
    let pixels = u64::from(header.width) * u64::from(header.height);
    let mut limits = Limits::default();
    limits.max_image_width = Some(header.width);
    limits.max_image_height = Some(header.height);
    limits.max_alloc = Some(
        pixels
            .saturating_mul(16)
            .saturating_add(DECODER_OVERHEAD_BYTES),
    );
    limits
}

/// Decodes every frame, dropping each after use, and returns the number of frames decoded.
/// Frame count and orientation found by decoding an image in full.
struct Decoded {
    frames: u32,
    /// The EXIF orientation turns the stored pixels by 90° or 270°, so the upright image has
    /// width and height swapped.
    transposed: bool,
}

impl Decoded {
    fn animation(frames: u32) -> Self {
        Decoded {
            frames,
            transposed: false,
        }
    }
}

fn decode_image<R: BufRead + Seek>(
    reader: R,
    media_type: MediaType,
    header: &ImageHeader,
    limits: &ProbeLimits,
) -> Result<Decoded, ProbeError> {
    let decoder_limits = decoder_limits(header);
    let image_error = |err| map_image_error(err, media_type);
    match media_type {
        MediaType::Png if header.animated => {
            let decoder = PngDecoder::with_limits(reader, decoder_limits).map_err(image_error)?;
            let animation = decoder.apng().map_err(image_error)?;
            decode_frames(animation, media_type, limits).map(Decoded::animation)
        }
        MediaType::Gif => {
            let mut decoder = GifDecoder::new(reader).map_err(image_error)?;
            decoder.set_limits(decoder_limits).map_err(image_error)?;
            decode_frames(decoder, media_type, limits).map(Decoded::animation)
        }
        MediaType::Webp if header.animated => {
            let mut decoder = WebPDecoder::new(reader).map_err(image_error)?;
            decoder.set_limits(decoder_limits).map_err(image_error)?;
            decode_frames(decoder, media_type, limits).map(Decoded::animation)
        }
        MediaType::Png | MediaType::Jpeg | MediaType::Webp => {
            let format = match media_type {
                MediaType::Png => ImageFormat::Png,
                MediaType::Jpeg => ImageFormat::Jpeg,
                _ => ImageFormat::WebP,
            };
            let mut image_reader = ImageReader::with_format(reader, format);
            image_reader.limits(decoder_limits.clone());
            let mut decoder = image_reader.into_decoder().map_err(image_error)?;
            // The pixel buffer must fit the allocation limit, as `ImageReader::decode` checks.
            let mut allocation = decoder_limits;
            allocation
                .reserve(decoder.total_bytes())
                .map_err(image_error)?;
            // Unreadable EXIF leaves the image as stored, as the transformation decoders do.
            let orientation = decoder
                .orientation()
                .unwrap_or(image::metadata::Orientation::NoTransforms);
            drop(DynamicImage::from_decoder(decoder).map_err(image_error)?);
            let transposed = matches!(
                orientation,
                image::metadata::Orientation::Rotate90
                    | image::metadata::Orientation::Rotate270
                    | image::metadata::Orientation::Rotate90FlipH
                    | image::metadata::Orientation::Rotate270FlipH
            );
            Ok(Decoded {
                frames: 1,
                transposed,
            })
        }
        MediaType::Mp4 | MediaType::Webm => unreachable!("videos are not decoded"),
    }
}

fn decode_frames<'a>(
    decoder: impl AnimationDecoder<'a>,
    media_type: MediaType,
    limits: &ProbeLimits,
) -> Result<u32, ProbeError> {
    let mut frames: u64 = 0;
    for frame in decoder.into_frames() {
        drop(frame.map_err(|err| map_image_error(err, media_type))?);
        frames += 1;
        // The header count was checked already; this guards against a decoder that finds more.
        limits.check_frames(frames)?;
    }
    if frames == 0 {
        return Err(corrupt(format!(
            "the {} contains no decodable frame",
            format_name(media_type)
        )));
    }
    Ok(frames as u32)
}

fn map_image_error(err: ImageError, media_type: MediaType) -> ProbeError {
    let format = format_name(media_type);
    match err {
        ImageError::Decoding(err) => corrupt(format!("{format} decoding failed: {err}")),
        ImageError::Unsupported(err) => unsupported_coding(format!("{format}: {err}")),
        ImageError::Limits(err) => corrupt(format!(
            "{format} decoding exceeded the limits derived from its header: {err}"
        )),
        ImageError::IoError(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
            truncated(&format!("{format} image data"))
        }
        ImageError::IoError(err) => ProbeError::Io(err),
        other => corrupt(format!("{format} decoding failed: {other}")),
    }
}

fn format_name(media_type: MediaType) -> &'static str {
    match media_type {
        MediaType::Png => "PNG",
        MediaType::Jpeg => "JPEG",
        MediaType::Gif => "GIF",
        MediaType::Webp => "WebP",
        MediaType::Mp4 => "MP4",
        MediaType::Webm => "WebM",
    }
}

// ---------------------------------------------------------------------------------------------
// MP4 (ISO base media file format)
// ---------------------------------------------------------------------------------------------

mod mp4 {
    use std::io::{BufRead, Seek};

    use super::{
        corrupt, unsupported_coding, MediaInfo, MediaType, ProbeError, ProbeLimits, Source,
    };

    /// Maximum number of boxes visited in one file, which bounds the work that a file made of tiny
    /// boxes can cause. A fragmented stream uses two top-level boxes a fragment, so this still
    /// allows hundreds of thousands of fragments.
    const MAX_BOXES: u32 = 1_000_000;

    struct BoxHeader {
        kind: [u8; 4],
        payload: u64,
        end: u64,
    }

    impl BoxHeader {
        fn payload_len(&self) -> u64 {
            self.end - self.payload
        }

        fn name(&self) -> String {
            String::from_utf8_lossy(&self.kind).into_owned()
        }
    }

    #[derive(Default)]
    struct Walk {
        boxes_visited: u32,
    }

    impl Walk {
        fn read_box_header<R: BufRead + Seek>(
            &mut self,
            source: &mut Source<R>,
            parent_end: u64,
        ) -> Result<BoxHeader, ProbeError> {
            self.boxes_visited += 1;
            if self.boxes_visited > MAX_BOXES {
                return Err(corrupt(format!("the MP4 has more than {MAX_BOXES} boxes")));
            }
            let start = source.pos;
            if parent_end - start < 8 {
                return Err(corrupt(format!(
                    "the MP4 box header at offset {start} runs past the end of its container"
                )));
            }
            let size32 = source.read_u32_be("MP4 box header")?;
            let kind = source.read_array::<4>("MP4 box header")?;
            let (size, header_len) = match size32 {
                // Size 0 means the box extends to the end of its container.
                0 => (parent_end - start, 8),
                1 => (source.read_u64_be("MP4 box header")?, 16),
                size => (u64::from(size), 8),
            };
            if size < header_len || size > parent_end - start {
                let container = if parent_end == source.len {
                    "the file"
                } else {
                    "its parent box"
                };
                return Err(corrupt(format!(
                    "the MP4 '{}' box at offset {start} declares {size} bytes, which runs past \
                     the end of {container}",
                    String::from_utf8_lossy(&kind)
                )));
            }
            Ok(BoxHeader {
                kind,
                payload: start + header_len,
                end: start + size,
            })
        }

        /// Lists the child boxes of `parent`, whose payload starts `skip` bytes in.
        fn children<R: BufRead + Seek>(
            &mut self,
            source: &mut Source<R>,
            parent: &BoxHeader,
            skip: u64,
        ) -> Result<Vec<BoxHeader>, ProbeError> {
            let mut children = Vec::new();
            let mut pos = parent.payload + skip;
            while pos < parent.end {
                source.seek_to(pos, "MP4 box")?;
                let child = self.read_box_header(source, parent.end)?;
                pos = child.end;
                children.push(child);
            }
            Ok(children)
        }
    }

    #[derive(Default)]
    struct Movie {
        timescale: Option<u32>,
        /// `None` when the header marks the duration as unknown.
        duration: Option<u64>,
        fragment_duration: Option<u64>,
        fragmented: bool,
        video: Option<VideoTrack>,
    }

    #[derive(Default)]
    struct VideoTrack {
        /// Presentation size from `tkhd`, after any 90° rotation in its matrix.
        display_size: Option<(u32, u32)>,
        /// Coded size from the first `stsd` sample entry.
        coded_size: Option<(u32, u32)>,
        sample_count: Option<u32>,
        /// Lowest and highest chunk offsets from `stco` or `co64`.
        chunk_offsets: Option<(u64, u64)>,
    }

    /// Walks the top-level boxes with seeks (the `moov` may follow the `mdat`), reads the movie
    /// and first video track headers, and checks that the samples point into media data.
    pub(super) fn probe<R: BufRead + Seek>(
        source: &mut Source<R>,
        limits: &ProbeLimits,
    ) -> Result<MediaInfo, ProbeError> {
        let mut walk = Walk::default();
        let mut movie: Option<Movie> = None;
        let mut media_data: Vec<(u64, u64)> = Vec::new();
        let mut has_fragments = false;

        source.seek_to(0, "MP4")?;
        while source.pos < source.len {
            let top = walk.read_box_header(source, source.len)?;
            match &top.kind {
                b"moov" => {
                    if movie.is_some() {
                        return Err(corrupt("the MP4 has more than one moov box"));
                    }
                    movie = Some(read_movie(source, &mut walk, &top)?);
                }
                b"mdat" if top.payload_len() > 0 => media_data.push((top.payload, top.end)),
                b"moof" => has_fragments = true,
                _ => {}
            }
            source.seek_to(top.end, "MP4 box")?;
        }

        let movie = movie.ok_or_else(|| corrupt("the MP4 has no moov box (movie header)"))?;
        if media_data.is_empty() {
            return Err(corrupt("the MP4 has no media data (no mdat box)"));
        }
        let track = movie
            .video
            .as_ref()
            .ok_or_else(|| unsupported_coding("the MP4 has no video track"))?;

        let (width, height) = track
            .display_size
            .or(track.coded_size)
            .ok_or_else(|| corrupt("the MP4 video track declares no frame size"))?;
        for (w, h) in [track.display_size, track.coded_size].into_iter().flatten() {
            limits.check_pixels(w.into(), h.into())?;
        }

        if movie.fragmented {
            if !has_fragments {
                return Err(corrupt(
                    "the fragmented MP4 has no movie fragment (moof box)",
                ));
            }
        } else {
            check_samples(track, &media_data)?;
        }

        Ok(MediaInfo {
            media_type: MediaType::Mp4,
            width: Some(width),
            height: Some(height),
            frames: None,
            duration_secs: duration_secs(&movie)?,
        })
    }

    fn check_samples(track: &VideoTrack, media_data: &[(u64, u64)]) -> Result<(), ProbeError> {
        if track.sample_count.unwrap_or(0) == 0 {
            return Err(corrupt("the MP4 video track has no samples"));
        }
        let (first, last) = track
            .chunk_offsets
            .ok_or_else(|| corrupt("the MP4 video track has no chunk offsets (stco or co64)"))?;
        let in_media_data = |offset: u64| {
            media_data
                .iter()
                .any(|&(start, end)| (start..end).contains(&offset))
        };
        if !in_media_data(first) || !in_media_data(last) {
            return Err(corrupt(
                "the MP4 video samples point outside the media data (mdat)",
            ));
        }
        Ok(())
    }

    fn duration_secs(movie: &Movie) -> Result<Option<f64>, ProbeError> {
        let timescale = movie
            .timescale
            .ok_or_else(|| corrupt("the MP4 has no movie header (mvhd box)"))?;
        if timescale == 0 {
            return Err(corrupt("the MP4 movie header declares a timescale of 0"));
        }
        // Fragmented files often leave the movie duration at 0 and give it in `mehd`.
        let duration = match movie.duration {
            Some(0) | None => movie.fragment_duration.or(movie.duration),
            known => known,
        };
        Ok(duration.map(|units| units as f64 / f64::from(timescale)))
    }

    fn read_movie<R: BufRead + Seek>(
        source: &mut Source<R>,
        walk: &mut Walk,
        moov: &BoxHeader,
    ) -> Result<Movie, ProbeError> {
        let mut movie = Movie::default();
        for child in walk.children(source, moov, 0)? {
            match &child.kind {
                b"mvhd" => read_movie_header(source, &child, &mut movie)?,
                b"trak" if movie.video.is_none() => {
                    movie.video = read_track(source, walk, &child)?;
                }
                b"mvex" => {
                    movie.fragmented = true;
                    for grandchild in walk.children(source, &child, 0)? {
                        if &grandchild.kind == b"mehd" {
                            movie.fragment_duration =
                                Some(read_versioned_u32_or_u64(source, &grandchild, 0)?);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(movie)
    }

    fn read_movie_header<R: BufRead + Seek>(
        source: &mut Source<R>,
        mvhd: &BoxHeader,
        movie: &mut Movie,
    ) -> Result<(), ProbeError> {
        source.seek_to(mvhd.payload, "MP4 mvhd box")?;
        let version = source.read_u8("MP4 mvhd box")?;
        let (times_len, needed) = if version == 1 { (16, 32) } else { (8, 20) };
        if mvhd.payload_len() < needed {
            return Err(corrupt("the MP4 mvhd box is too short"));
        }
        source.skip(3 + times_len, "MP4 mvhd box")?;
        movie.timescale = Some(source.read_u32_be("MP4 mvhd box")?);
        let duration = if version == 1 {
            source.read_u64_be("MP4 mvhd box")?
        } else {
            match source.read_u32_be("MP4 mvhd box")? {
                u32::MAX => u64::MAX,
                short => short.into(),
            }
        };
        // All ones marks an unknown duration.
        movie.duration = (duration != u64::MAX).then_some(duration);
        Ok(())
    }

    /// Reads a full box whose payload starts with a 32-bit value in version 0 or a 64-bit value
    /// in version 1, after `skip` bytes that follow the version and flags.
    fn read_versioned_u32_or_u64<R: BufRead + Seek>(
        source: &mut Source<R>,
        full_box: &BoxHeader,
        skip: u64,
    ) -> Result<u64, ProbeError> {
        let structure = format!("MP4 {} box", full_box.name());
        source.seek_to(full_box.payload, &structure)?;
        let version = source.read_u8(&structure)?;
        let value_len = if version == 1 { 8 } else { 4 };
        if full_box.payload_len() < 4 + skip + value_len {
            return Err(corrupt(format!("the {structure} is too short")));
        }
        source.skip(3 + skip, &structure)?;
        if version == 1 {
            source.read_u64_be(&structure)
        } else {
            Ok(source.read_u32_be(&structure)?.into())
        }
    }

    /// Returns the track if its handler is video.
    fn read_track<R: BufRead + Seek>(
        source: &mut Source<R>,
        walk: &mut Walk,
        trak: &BoxHeader,
    ) -> Result<Option<VideoTrack>, ProbeError> {
        let children = walk.children(source, trak, 0)?;
        let Some(mdia) = children.iter().find(|child| &child.kind == b"mdia") else {
            return Ok(None);
        };
        let mdia_children = walk.children(source, mdia, 0)?;
        let Some(hdlr) = mdia_children.iter().find(|child| &child.kind == b"hdlr") else {
            return Ok(None);
        };
        if hdlr.payload_len() < 12 {
            return Err(corrupt("the MP4 hdlr box is too short"));
        }
        source.seek_to(hdlr.payload + 8, "MP4 hdlr box")?;
        if &source.read_array::<4>("MP4 hdlr box")? != b"vide" {
            return Ok(None);
        }

        let mut track = VideoTrack::default();
        if let Some(tkhd) = children.iter().find(|child| &child.kind == b"tkhd") {
            track.display_size = read_track_header(source, tkhd)?;
        }
        let Some(minf) = mdia_children.iter().find(|child| &child.kind == b"minf") else {
            return Ok(Some(track));
        };
        let minf_children = walk.children(source, minf, 0)?;
        let Some(stbl) = minf_children.iter().find(|child| &child.kind == b"stbl") else {
            return Ok(Some(track));
        };
        for table in walk.children(source, stbl, 0)? {
            match &table.kind {
                b"stsd" => track.coded_size = read_sample_description(source, walk, &table)?,
                b"stsz" | b"stz2" => {
                    // Both keep the sample count at payload offset 8.
                    if table.payload_len() < 12 {
                        return Err(corrupt("the MP4 sample size box is too short"));
                    }
                    source.seek_to(table.payload + 8, "MP4 sample size box")?;
                    track.sample_count = Some(source.read_u32_be("MP4 sample size box")?);
                }
                b"stco" => track.chunk_offsets = read_chunk_offsets(source, &table, 4)?,
                b"co64" => track.chunk_offsets = read_chunk_offsets(source, &table, 8)?,
                _ => {}
            }
        }
        Ok(Some(track))
    }

    fn read_track_header<R: BufRead + Seek>(
        source: &mut Source<R>,
        tkhd: &BoxHeader,
    ) -> Result<Option<(u32, u32)>, ProbeError> {
        source.seek_to(tkhd.payload, "MP4 tkhd box")?;
        let version = source.read_u8("MP4 tkhd box")?;

        // Version, flags, times, track id, duration, then 16 bytes of layer, group and volume.
        let before_matrix = if version == 1 {
            4 + 32 + 16
        } else {
            4 + 20 + 16
        };
        if tkhd.payload_len() < before_matrix + 36 + 8 {
            return Err(corrupt("the MP4 tkhd box is too short"));
        }
        source.seek_to(tkhd.payload + before_matrix, "MP4 tkhd box")?;
        let mut matrix = [0i32; 9];
        for value in &mut matrix {
            *value = source.read_u32_be("MP4 tkhd box")? as i32;
        }

        // Widths and heights are 16.16 fixed point.
        let width = source.read_u32_be("MP4 tkhd box")? >> 16;
        let height = source.read_u32_be("MP4 tkhd box")? >> 16;
        if width == 0 || height == 0 {
            return Ok(None);
        }

        // A matrix with zero diagonal and a non-zero b and c turns the picture by 90° or 270°.
        let [a, b, _, c, d, ..] = matrix;
        let rotated = a == 0 && d == 0 && b != 0 && c != 0;
        Ok(Some(if rotated {
            (height, width)
        } else {
            (width, height)
        }))
    }

    /// Reads the coded size from the first sample entry, laid out as a VisualSampleEntry
    /// (`avc1`, `hvc1`, `hev1`, `vp09`, `av01` and the rest).
    fn read_sample_description<R: BufRead + Seek>(
        source: &mut Source<R>,
        walk: &mut Walk,
        stsd: &BoxHeader,
    ) -> Result<Option<(u32, u32)>, ProbeError> {
        if stsd.payload_len() < 8 {
            return Err(corrupt("the MP4 stsd box is too short"));
        }
        let Some(entry) = walk.children(source, stsd, 8)?.into_iter().next() else {
            return Ok(None);
        };
        // Reserved bytes, data reference index and predefined fields precede width and height.
        const SIZE_OFFSET: u64 = 6 + 2 + 16;
        if entry.payload_len() < SIZE_OFFSET + 4 {
            return Err(corrupt(format!(
                "the MP4 '{}' sample entry is too short",
                entry.name()
            )));
        }
        source.seek_to(entry.payload + SIZE_OFFSET, "MP4 sample entry")?;
        let width = source.read_u16_be("MP4 sample entry")?;
        let height = source.read_u16_be("MP4 sample entry")?;
        Ok((width > 0 && height > 0).then_some((width.into(), height.into())))
    }

    /// Returns the lowest and highest chunk offsets; `None` when the table is empty.
    fn read_chunk_offsets<R: BufRead + Seek>(
        source: &mut Source<R>,
        table: &BoxHeader,
        entry_len: u64,
    ) -> Result<Option<(u64, u64)>, ProbeError> {
        const STRUCTURE: &str = "MP4 chunk offset box";
        if table.payload_len() < 8 {
            return Err(corrupt(format!("the {STRUCTURE} is too short")));
        }
        source.seek_to(table.payload + 4, STRUCTURE)?;
        let count = u64::from(source.read_u32_be(STRUCTURE)?);
        if count * entry_len > table.payload_len() - 8 {
            return Err(corrupt(format!(
                "the {STRUCTURE} declares {count} entries, more than it contains"
            )));
        }
        let mut range: Option<(u64, u64)> = None;
        for _ in 0..count {
            let offset = if entry_len == 8 {
                source.read_u64_be(STRUCTURE)?
            } else {
                source.read_u32_be(STRUCTURE)?.into()
            };
            range = Some(match range {
                Some((low, high)) => (low.min(offset), high.max(offset)),
                None => (offset, offset),
            });
        }
        Ok(range)
    }
}

// ---------------------------------------------------------------------------------------------
// WebM (Matroska subset, EBML)
// ---------------------------------------------------------------------------------------------

mod webm {
    use std::io::{BufRead, Seek};

    use super::{
        corrupt, unsupported_coding, MediaInfo, MediaType, ProbeError, ProbeLimits, Source,
    };

    const EBML_HEADER: u32 = 0x1A45_DFA3;
    const DOC_TYPE: u32 = 0x4282;
    const SEGMENT: u32 = 0x1853_8067;
    const INFO: u32 = 0x1549_A966;
    const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
    const DURATION: u32 = 0x4489;
    const TRACKS: u32 = 0x1654_AE6B;
    const TRACK_ENTRY: u32 = 0xAE;
    const TRACK_TYPE: u32 = 0x83;
    const VIDEO: u32 = 0xE0;
    const PIXEL_WIDTH: u32 = 0xB0;
    const PIXEL_HEIGHT: u32 = 0xBA;
    const DISPLAY_WIDTH: u32 = 0x54B0;
    const DISPLAY_HEIGHT: u32 = 0x54BA;
    const DISPLAY_UNIT: u32 = 0x54B2;
    const CLUSTER: u32 = 0x1F43_B675;
    const VOID: u32 = 0xEC;

    /// TrackType value of a video track.
    const TRACK_TYPE_VIDEO: u64 = 1;
    /// DisplayUnit value meaning that DisplayWidth and DisplayHeight are in pixels.
    const DISPLAY_UNIT_PIXELS: u64 = 0;
    /// Default TimestampScale: one tick is one millisecond.
    const DEFAULT_TIMESTAMP_SCALE: u64 = 1_000_000;
    /// Maximum number of elements visited in one file, which bounds the work that a file made of
    /// tiny elements can cause. Only top-level elements and track headers are visited, so even
    /// one Cluster a second would allow files over 200 hours long.
    const MAX_ELEMENTS: u32 = 1_000_000;
    /// DocType strings are short ASCII words such as "webm".
    const MAX_DOC_TYPE_LEN: u64 = 64;

    struct Element {
        id: u32,
        start: u64,
        data: u64,
        /// `None` for an element of unknown size, which runs to the end of its parent.
        end: Option<u64>,
    }

    impl Element {
        fn data_len(&self) -> u64 {
            self.end.map_or(0, |end| end - self.data)
        }
    }

    #[derive(Default)]
    struct Walk {
        elements_visited: u32,
    }

    impl Walk {
        fn read_element<R: BufRead + Seek>(
            &mut self,
            source: &mut Source<R>,
            parent_end: u64,
        ) -> Result<Element, ProbeError> {
            self.elements_visited += 1;
            if self.elements_visited > MAX_ELEMENTS {
                return Err(corrupt(format!(
                    "the WebM has more than {MAX_ELEMENTS} elements"
                )));
            }
            let start = source.pos;
            let id = read_id(source)?;
            let size = read_size(source)?;
            let data = source.pos;
            let end = match size {
                Some(size) => {
                    if size > parent_end.saturating_sub(data) {
                        let container = if parent_end == source.len {
                            "the file"
                        } else {
                            "its parent element"
                        };
                        return Err(corrupt(format!(
                            "the WebM {} at offset {start} declares {size} bytes, which runs past \
                             the end of {container}",
                            element_name(id)
                        )));
                    }
                    Some(data + size)
                }
                None => None,
            };
            Ok(Element {
                id,
                start,
                data,
                end,
            })
        }

        /// Lists the children of a master element; children must have a known size.
        fn children<R: BufRead + Seek>(
            &mut self,
            source: &mut Source<R>,
            parent: &Element,
        ) -> Result<Vec<Element>, ProbeError> {
            let parent_end = parent.end.ok_or_else(|| {
                corrupt(format!(
                    "the WebM {} at offset {} has an unknown size",
                    element_name(parent.id),
                    parent.start
                ))
            })?;
            let mut children = Vec::new();
            let mut pos = parent.data;
            while pos < parent_end {
                source.seek_to(pos, "WebM element")?;
                let child = self.read_element(source, parent_end)?;
                pos = child.end.ok_or_else(|| {
                    corrupt(format!(
                        "the WebM {} at offset {} has an unknown size",
                        element_name(child.id),
                        child.start
                    ))
                })?;
                children.push(child);
            }
            Ok(children)
        }
    }

    /// Names an element in error messages.
    fn element_name(id: u32) -> String {
        let name = match id {
            EBML_HEADER => "EBML header",
            SEGMENT => "Segment",
            INFO => "Info",
            TRACKS => "Tracks",
            TRACK_ENTRY => "TrackEntry",
            VIDEO => "Video",
            CLUSTER => "Cluster",
            _ => return format!("element {id:#X}"),
        };
        format!("{name} element")
    }

    /// Reads an element ID, which keeps its length marker bits (IDs are 1 to 4 bytes).
    fn read_id<R: BufRead + Seek>(source: &mut Source<R>) -> Result<u32, ProbeError> {
        let first = source.read_u8("WebM element ID")?;
        let len = first.leading_zeros() + 1;
        if len > 4 {
            return Err(corrupt(format!(
                "invalid WebM element ID byte {first:#04X}"
            )));
        }
        let mut id = u32::from(first);
        for _ in 1..len {
            id = (id << 8) | u32::from(source.read_u8("WebM element ID")?);
        }
        Ok(id)
    }

    /// Reads an element data size (1 to 8 bytes); all value bits set means unknown size.
    fn read_size<R: BufRead + Seek>(source: &mut Source<R>) -> Result<Option<u64>, ProbeError> {
        let first = source.read_u8("WebM element size")?;
        if first == 0 {
            return Err(corrupt("invalid WebM element size (longer than 8 bytes)"));
        }
        let len = first.leading_zeros() + 1;
        let mut value = u64::from(first) & (0xFF >> len);
        for _ in 1..len {
            value = (value << 8) | u64::from(source.read_u8("WebM element size")?);
        }
        let all_ones = (1u64 << (7 * len)) - 1;
        Ok((value != all_ones).then_some(value))
    }

    fn read_uint<R: BufRead + Seek>(
        source: &mut Source<R>,
        element: &Element,
    ) -> Result<u64, ProbeError> {
        let len = element.data_len();
        if len > 8 {
            return Err(corrupt(format!(
                "the WebM unsigned integer element {:#X} is {len} bytes long",
                element.id
            )));
        }
        source.seek_to(element.data, "WebM element")?;
        let mut value = 0u64;
        for _ in 0..len {
            value = (value << 8) | u64::from(source.read_u8("WebM element")?);
        }
        Ok(value)
    }

    fn read_float<R: BufRead + Seek>(
        source: &mut Source<R>,
        element: &Element,
    ) -> Result<f64, ProbeError> {
        source.seek_to(element.data, "WebM element")?;
        match element.data_len() {
            0 => Ok(0.0),
            4 => Ok(f32::from_be_bytes(source.read_array("WebM element")?).into()),
            8 => Ok(f64::from_be_bytes(source.read_array("WebM element")?)),
            len => Err(corrupt(format!(
                "the WebM float element {:#X} is {len} bytes long",
                element.id
            ))),
        }
    }

    /// Reads the DocType from the EBML header at the current position.
    pub(super) fn read_doc_type<R: BufRead + Seek>(
        source: &mut Source<R>,
    ) -> Result<Vec<u8>, ProbeError> {
        let mut walk = Walk::default();
        let header = walk.read_element(source, source.len)?;
        if header.id != EBML_HEADER {
            return Err(corrupt("the file does not start with an EBML header"));
        }
        for child in walk.children(source, &header)? {
            if child.id == DOC_TYPE {
                if child.data_len() > MAX_DOC_TYPE_LEN {
                    return Err(corrupt("the EBML DocType is implausibly long"));
                }
                source.seek_to(child.data, "EBML DocType")?;
                let mut doc_type = vec![0; child.data_len() as usize];
                source.read_exact(&mut doc_type, "EBML DocType")?;
                // Strings may be padded with zero bytes.
                while doc_type.last() == Some(&0) {
                    doc_type.pop();
                }
                return Ok(doc_type);
            }
        }
        // DocType is mandatory in WebM, but Matroska defines "matroska" as its default.
        Ok(b"matroska".to_vec())
    }

    #[derive(Default)]
    struct Segment {
        timestamp_scale: Option<u64>,
        duration: Option<f64>,
        saw_tracks: bool,
        video: Option<VideoSize>,
        saw_cluster: bool,
    }

    /// Reads the EBML header, then walks the Segment's top-level elements with seeks: Info for
    /// the duration, Tracks for the first video track's size, and the Clusters that carry media.
    pub(super) fn probe<R: BufRead + Seek>(
        source: &mut Source<R>,
        limits: &ProbeLimits,
    ) -> Result<MediaInfo, ProbeError> {
        source.seek_to(0, "WebM")?;
        let doc_type = read_doc_type(source)?;
        if doc_type != b"webm" {
            return Err(corrupt(format!(
                "the EBML DocType is {:?}; expected \"webm\"",
                String::from_utf8_lossy(&doc_type)
            )));
        }

        let mut walk = Walk::default();
        // `read_doc_type` leaves the position inside the header, so find the header's end again.
        source.seek_to(0, "WebM")?;
        let header = walk.read_element(source, source.len)?;
        let mut pos = header.end.unwrap_or(source.len);
        let segment = loop {
            if pos >= source.len {
                return Err(corrupt("the WebM has no Segment element"));
            }
            source.seek_to(pos, "WebM")?;
            let element = walk.read_element(source, source.len)?;
            match (element.id, element.end) {
                (SEGMENT, _) => break element,
                (VOID, Some(end)) => pos = end,
                _ => {
                    return Err(corrupt(format!(
                        "unexpected WebM {} before the Segment",
                        element_name(element.id)
                    )))
                }
            }
        };

        let segment_end = segment.end.unwrap_or(source.len);
        let mut found = Segment::default();
        let mut pos = segment.data;
        while pos < segment_end {
            source.seek_to(pos, "WebM Segment")?;
            let element = walk.read_element(source, segment_end)?;
            match element.id {
                INFO => read_info(source, &mut walk, &element, &mut found)?,
                TRACKS if !found.saw_tracks => {
                    found.saw_tracks = true;
                    found.video = read_video_size(source, &mut walk, &element)?;
                    if let Some(video) = &found.video {
                        limits.check_pixels(video.pixels.0, video.pixels.1)?;
                        if let Some((width, height)) = video.display {
                            limits.check_pixels(width, height)?;
                        }
                    }
                }
                CLUSTER => found.saw_cluster = true,
                _ => {}
            }
            match element.end {
                Some(end) => pos = end,
                // Live recordings write Clusters of unknown size; the rest of the Segment is
                // media data, which is not parsed block by block.
                None if element.id == CLUSTER => break,
                None => {
                    return Err(corrupt(format!(
                        "the WebM {} at offset {} has an unknown size",
                        element_name(element.id),
                        element.start
                    )))
                }
            }
        }

        let video = found
            .video
            .ok_or_else(|| unsupported_coding("the WebM has no video track"))?;
        let (width, height) = video.display.unwrap_or(video.pixels);
        if !found.saw_cluster {
            return Err(corrupt("the WebM has no media data (no Cluster element)"));
        }
        let scale = found.timestamp_scale.unwrap_or(DEFAULT_TIMESTAMP_SCALE);
        let duration_secs = found
            .duration
            .map(|ticks| ticks * scale as f64 / 1e9)
            .filter(|secs| secs.is_finite() && *secs >= 0.0);

        Ok(MediaInfo {
            media_type: MediaType::Webm,
            width: Some(u32::try_from(width).map_err(|_| corrupt("WebM width out of range"))?),
            height: Some(u32::try_from(height).map_err(|_| corrupt("WebM height out of range"))?),
            frames: None,
            duration_secs,
        })
    }

    fn read_info<R: BufRead + Seek>(
        source: &mut Source<R>,
        walk: &mut Walk,
        info: &Element,
        found: &mut Segment,
    ) -> Result<(), ProbeError> {
        for child in walk.children(source, info)? {
            match child.id {
                TIMESTAMP_SCALE => {
                    let scale = read_uint(source, &child)?;
                    if scale == 0 {
                        return Err(corrupt("the WebM TimestampScale is 0"));
                    }
                    found.timestamp_scale = Some(scale);
                }
                DURATION => found.duration = Some(read_float(source, &child)?),
                _ => {}
            }
        }
        Ok(())
    }

    struct VideoSize {
        /// PixelWidth and PixelHeight: the coded frame size.
        pixels: (u64, u64),
        /// DisplayWidth and DisplayHeight, when given in pixels.
        display: Option<(u64, u64)>,
    }

    /// Reads the frame size of the first video TrackEntry.
    fn read_video_size<R: BufRead + Seek>(
        source: &mut Source<R>,
        walk: &mut Walk,
        tracks: &Element,
    ) -> Result<Option<VideoSize>, ProbeError> {
        for entry in walk.children(source, tracks)? {
            if entry.id != TRACK_ENTRY {
                continue;
            }
            let fields = walk.children(source, &entry)?;
            let Some(track_type) = fields.iter().find(|field| field.id == TRACK_TYPE) else {
                continue;
            };
            if read_uint(source, track_type)? != TRACK_TYPE_VIDEO {
                continue;
            }
            let video = fields
                .iter()
                .find(|field| field.id == VIDEO)
                .ok_or_else(|| corrupt("the WebM video track has no Video element"))?;
            let (mut width, mut height) = (0, 0);
            let (mut display_width, mut display_height) = (0, 0);
            let mut display_unit = DISPLAY_UNIT_PIXELS;
            for setting in walk.children(source, video)? {
                match setting.id {
                    PIXEL_WIDTH => width = read_uint(source, &setting)?,
                    PIXEL_HEIGHT => height = read_uint(source, &setting)?,
                    DISPLAY_WIDTH => display_width = read_uint(source, &setting)?,
                    DISPLAY_HEIGHT => display_height = read_uint(source, &setting)?,
                    DISPLAY_UNIT => display_unit = read_uint(source, &setting)?,
                    _ => {}
                }
            }
            if width == 0 || height == 0 {
                return Err(corrupt(format!(
                    "the WebM video track declares a size of {width}x{height}"
                )));
            }
            let display =
                (display_unit == DISPLAY_UNIT_PIXELS && display_width > 0 && display_height > 0)
                    .then_some((display_width, display_height));
            return Ok(Some(VideoSize {
                pixels: (width, height),
                display,
            }));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::path::PathBuf;

    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");

    /// Returns the limits the expected outcomes assume: 100 megapixels and 1000 frames.
    fn limits() -> ProbeLimits {
        ProbeLimits {
            max_source_pixels: 100_000_000,
            max_frames: 1000,
        }
    }

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(FIXTURES).join(name)
    }

    fn read_head(path: &Path) -> Vec<u8> {
        let mut head = Vec::new();
        File::open(path)
            .unwrap_or_else(|err| panic!("cannot open {}: {err}", path.display()))
            .take(SNIFF_LEN as u64)
            .read_to_end(&mut head)
            .unwrap();
        head
    }

    /// Result of sniffing then probing one file, in a form that compares with `==`.
    #[derive(Debug, PartialEq)]
    enum Outcome {
        Image {
            media_type: MediaType,
            width: u32,
            height: u32,
            frames: u32,
        },
        Video {
            media_type: MediaType,
            width: u32,
            height: u32,
            duration_ms: Option<u64>,
        },
        /// `probe_file` failed with this error code.
        Rejected(&'static str),
        /// `sniff` returned `Unsupported` with this name.
        Unsupported(&'static str),
    }

    const fn image(media_type: MediaType, width: u32, height: u32, frames: u32) -> Outcome {
        Outcome::Image {
            media_type,
            width,
            height,
            frames,
        }
    }

    const fn video(media_type: MediaType, width: u32, height: u32, duration_ms: u64) -> Outcome {
        Outcome::Video {
            media_type,
            width,
            height,
            duration_ms: Some(duration_ms),
        }
    }

    fn outcome_of(path: &Path, limits: &ProbeLimits) -> Outcome {
        let media_type = match sniff(&read_head(path)) {
            Ok(media_type) => media_type,
            Err(unsupported) => return Outcome::Unsupported(unsupported.detected),
        };
        match probe_file(path, media_type, limits) {
            Err(err) => Outcome::Rejected(err.code()),
            Ok(info) if info.media_type.is_image() => Outcome::Image {
                media_type: info.media_type,
                width: info.width.unwrap(),
                height: info.height.unwrap(),
                frames: info.frames.unwrap(),
            },
            Ok(info) => Outcome::Video {
                media_type: info.media_type,
                width: info.width.unwrap(),
                height: info.height.unwrap(),
                duration_ms: info
                    .duration_secs
                    .map(|secs| (secs * 1000.0).round() as u64),
            },
        }
    }

    use MediaType::{Gif, Jpeg, Mp4, Png, Webm, Webp};
    use Outcome::{Rejected, Unsupported as Unstored};

    const CORRUPT: Outcome = Rejected("corrupt_media");
    const TOO_MANY_PIXELS: Outcome = Rejected("too_many_pixels");
    const UNSUPPORTED_CODING: Outcome = Rejected("unsupported_coding");

    /// Every fixture with its expected result under [`limits`].
    const CASES: &[(&str, Outcome)] = &[
        ("anim-10f-loop.gif", image(Gif, 370, 285, 10)),
        ("anim-10f-loop.webp", image(Webp, 370, 285, 10)),
        ("anim-30f-transparent.gif", image(Gif, 80, 80, 30)),
        ("anim-97f-13x169.webp", image(Webp, 13, 169, 97)),
        ("anim-apng-20f.png", image(Png, 100, 100, 20)),
        // Invalid LZW data in a later frame: rejecting the whole file is one accepted policy.
        ("anim-invalid-multiframe.gif", CORRUPT),
        ("aspect-1x4000.png", image(Png, 1, 4000, 1)),
        ("aspect-4000x1.png", image(Png, 4000, 1, 1)),
        // A 32x32 screen with one 65535x1321 frame, cut off before its image data.
        ("bomb-gif-65535x66601-44B.gif", CORRUPT),
        // The second frame sits at (65535, 65535) and is clipped away.
        ("bomb-gif-frame-extents.gif", image(Gif, 100, 100, 2)),
        ("bomb-lottapixel-64250sq.jpg", TOO_MANY_PIXELS),
        ("bomb-webp-canvas-16383sq.webp", TOO_MANY_PIXELS),
        // A valid 280-megapixel greyscale JPEG: over the limit, not malicious.
        ("bomb-jpeg-20000x14000.jpg", TOO_MANY_PIXELS),
        // 65536x65536 palette PNG; the pixel count overflows 32 bits.
        ("bomb-png-65536sq.png", TOO_MANY_PIXELS),
        // 40 000 frames of 1x1 pixel.
        ("bomb-gif-40000-frames.gif", Rejected("too_many_frames")),
        ("cmyk-adobe-plain-quadrants.jpg", image(Jpeg, 64, 64, 1)),
        ("corrupt-jpeg-header.jpg", CORRUPT),
        ("corrupt-png-crlf-xcrn0g04.png", CORRUPT),
        ("corrupt-png-no-idat-xdtn0g01.png", CORRUPT),
        ("empty-zero-bytes.jpg", Unstored("empty")),
        ("grace_hopper.jpg", image(Jpeg, 512, 600, 1)),
        ("icc-adobergb-patches.jpg", image(Jpeg, 64, 64, 1)),
        ("icc-broken-iccp.png", image(Png, 248, 248, 1)),
        ("icc-display-p3-canary.png", image(Png, 8, 8, 1)),
        ("icc-prophoto-1x1.png", image(Png, 1, 1, 1)),
        ("jpeg-12bit.jpg", UNSUPPORTED_CODING),
        ("jpeg-arithmetic.jpg", UNSUPPORTED_CODING),
        ("jpeg-baseline-testorig.jpg", image(Jpeg, 227, 149, 1)),
        ("jpeg-lossless-sof3.jpg", UNSUPPORTED_CODING),
        ("jpeg-progressive-restart-420.jpg", image(Jpeg, 227, 149, 1)),
        ("meta-multiple-exif-1x1.jpg", image(Jpeg, 1, 1, 1)),
        ("no_time_for_that-anim.gif", image(Gif, 14, 25, 24)),
        ("orient-webp-exif6-hopper.webp", image(Webp, 128, 128, 1)),
        ("png-1x1-interlaced-palette.png", image(Png, 1, 1, 1)),
        ("png-gray-alpha-8bit.png", image(Png, 400, 300, 1)),
        ("png-gray-trns-key.png", image(Png, 64, 64, 1)),
        ("png-palette-all-transparent.png", image(Png, 300, 300, 1)),
        ("png-palette-trns-tbbn3p08.png", image(Png, 32, 32, 1)),
        ("png-signature-only.png", CORRUPT),
        ("png16-gray-alpha-basn4a16.png", image(Png, 32, 32, 1)),
        ("png16-gray-basn0g16.png", image(Png, 32, 32, 1)),
        ("png16-gray-interlaced-basi0g16.png", image(Png, 32, 32, 1)),
        ("png16-rgb-trns-tbgn2c16.png", image(Png, 32, 32, 1)),
        ("png16-rgba-basn6a16.png", image(Png, 32, 32, 1)),
        ("png16-rgba-interlaced-basi6a16.png", image(Png, 32, 32, 1)),
        ("rocket.jpg", image(Jpeg, 640, 427, 1)),
        ("skimage-logo-alpha.png", image(Png, 500, 500, 1)),
        ("sniff-jpeg-bytes-named.png", image(Jpeg, 227, 149, 1)),
        ("sniff-png-bytes-named.jpg", image(Png, 400, 300, 1)),
        ("sniff-webm-bytes-named.mp4", video(Webm, 854, 480, 1008)),
        ("sniff-webp-looks-like-svg.webp", image(Webp, 256, 256, 1)),
        ("svg-use-amplification.svg", Unstored("svg")),
        ("svg-xss-named.png", Unstored("svg")),
        ("svg-xss-script.svg", Unstored("svg")),
        ("trunc-gif.gif", CORRUPT),
        ("trunc-jpeg-baseline.jpg", CORRUPT),
        ("trunc-jpeg-progressive.jpg", CORRUPT),
        ("trunc-png.png", CORRUPT),
        ("video-faststart-3s.mp4", video(Mp4, 320, 240, 3000)),
        // The video track is 16:9; the cover-art picture stream is portrait and must not win.
        ("video-faststart-coverart.m4v", video(Mp4, 320, 180, 1003)),
        ("video-fuzz-double-moov.mp4", CORRUPT),
        ("video-hevc.mp4", video(Mp4, 640, 480, 40)),
        ("video-matroska-doctype.mkv", Unstored("matroska")),
        ("video-moov-at-end-3s.mp4", video(Mp4, 320, 240, 3000)),
        // 640x480 coded with a 16:9 sample aspect ratio: tkhd gives the display width.
        ("video-moov-at-end-sar16x9.mp4", video(Mp4, 1137, 480, 40)),
        ("video-moov-only-no-mdat.mp4", CORRUPT),
        // Its EBML DocType is "0000", so it is not recognised as WebM at all.
        ("video-vp9-corrupt-12336sq.webm", Unstored("unknown")),
        ("video-vp9-opus-1s.webm", video(Webm, 854, 480, 1008)),
    ];

    #[test]
    fn fixtures_match_expected_outcomes() {
        for (name, expected) in CASES {
            let actual = outcome_of(&fixture(name), &limits());
            assert_eq!(&actual, expected, "{name}");
        }
    }

    #[test]
    fn fixture_table_covers_every_edge_case_file() {
        const PREFIXES: &[&str] = &[
            "sniff-", "bomb-", "trunc-", "corrupt-", "svg-", "empty", "video-", "anim-", "png",
        ];
        for entry in std::fs::read_dir(FIXTURES).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if PREFIXES.iter().any(|prefix| name.starts_with(prefix)) {
                assert!(
                    CASES.iter().any(|(case, _)| *case == name),
                    "{name} has no entry in CASES"
                );
            }
        }
    }

    #[test]
    fn bombs_report_declared_size() {
        let cases = [
            ("bomb-lottapixel-64250sq.jpg", Jpeg, 64250, 64250),
            ("bomb-webp-canvas-16383sq.webp", Webp, 16383, 16383),
        ];
        for (name, media_type, width, height) in cases {
            let err = probe_file(&fixture(name), media_type, &limits()).unwrap_err();
            assert!(
                matches!(err, ProbeError::TooManyPixels { width: w, height: h, limit: 100_000_000 }
                    if w == width && h == height),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn corrupt_webm_rejected_when_probed() {
        // Sniffing already rejects this file; the parser must also reject it on its own.
        let path = fixture("video-vp9-corrupt-12336sq.webm");
        let err = probe_file(&path, Webm, &limits()).unwrap_err();
        assert_eq!(err.code(), "corrupt_media", "{err}");
    }

    #[test]
    fn frame_limit_applies_to_fixtures() {
        let tight = ProbeLimits {
            max_source_pixels: 100_000_000,
            max_frames: 9,
        };
        for (name, media_type) in [
            ("anim-10f-loop.gif", Gif),
            ("anim-10f-loop.webp", Webp),
            ("anim-apng-20f.png", Png),
        ] {
            let err = probe_file(&fixture(name), media_type, &tight).unwrap_err();
            assert!(
                matches!(err, ProbeError::TooManyFrames { limit: 9, .. }),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn video_pixel_limit_applies_to_fixtures() {
        let tight = ProbeLimits {
            max_source_pixels: 320 * 240 - 1,
            max_frames: 1000,
        };
        for (name, media_type) in [
            ("video-faststart-3s.mp4", Mp4),
            ("video-vp9-opus-1s.webm", Webm),
        ] {
            let err = probe_file(&fixture(name), media_type, &tight).unwrap_err();
            assert_eq!(err.code(), "too_many_pixels", "{name}: {err}");
        }
    }

    // --- Synthetic headers: no pixel data follows, so a limit error proves that the header alone
    // --- decided, before any decoder ran.

    fn probe_bytes(
        bytes: Vec<u8>,
        media_type: MediaType,
        limits: &ProbeLimits,
    ) -> Result<MediaInfo, ProbeError> {
        let len = bytes.len() as u64;
        probe_reader(Cursor::new(bytes), len, media_type, limits)
    }

    fn png_with_ihdr(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = PNG_SIGNATURE.to_vec();
        bytes.extend(13u32.to_be_bytes());
        bytes.extend(b"IHDR");
        bytes.extend(width.to_be_bytes());
        bytes.extend(height.to_be_bytes());
        bytes.extend([8, 3, 0, 0, 0]);
        bytes.extend([0; 4]);
        bytes
    }

    #[test]
    fn png_65536_square_rejected_without_overflow() {
        let err = probe_bytes(png_with_ihdr(65536, 65536), Png, &limits()).unwrap_err();
        assert!(
            matches!(
                err,
                ProbeError::TooManyPixels {
                    width: 65536,
                    height: 65536,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn png_max_dimensions_rejected_with_huge_limit() {
        // (2^31 - 1)^2 needs 62 bits: the product must not wrap even with no practical limit.
        let huge = ProbeLimits {
            max_source_pixels: u64::from(u32::MAX),
            max_frames: 1000,
        };
        let err = probe_bytes(png_with_ihdr(PNG_MAX_VALUE, PNG_MAX_VALUE), Png, &huge).unwrap_err();
        assert_eq!(err.code(), "too_many_pixels", "{err}");
    }

    #[test]
    fn apng_frame_count_rejected_from_actl() {
        let mut bytes = png_with_ihdr(1, 1);
        bytes.extend(8u32.to_be_bytes());
        bytes.extend(b"acTL");
        bytes.extend(5000u32.to_be_bytes());
        bytes.extend(0u32.to_be_bytes());
        bytes.extend([0; 4]);
        let err = probe_bytes(bytes, Png, &limits()).unwrap_err();
        assert!(
            matches!(
                err,
                ProbeError::TooManyFrames {
                    frames: 5000,
                    limit: 1000
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn jpeg_sof_over_limit_rejected() {
        let mut bytes = vec![0xFF, 0xD8];
        // SOF0: length 11, precision 8, height 14000, width 20000, one component.
        bytes.extend([0xFF, 0xC0, 0x00, 0x0B, 8]);
        bytes.extend(14000u16.to_be_bytes());
        bytes.extend(20000u16.to_be_bytes());
        bytes.extend([1, 1, 0x11, 0]);
        let err = probe_bytes(bytes, Jpeg, &limits()).unwrap_err();
        assert!(
            matches!(
                err,
                ProbeError::TooManyPixels {
                    width: 20000,
                    height: 14000,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    /// Builds a GIF with a `side`x`side` logical screen and `frames` one-pixel frames.
    fn gif_with_frames(side: u16, frames: u32) -> Vec<u8> {
        let mut bytes = b"GIF89a".to_vec();
        // Logical screen with a two-colour global table.
        bytes.extend(side.to_le_bytes());
        bytes.extend(side.to_le_bytes());
        bytes.extend([0x80, 0, 0]);
        bytes.extend([0, 0, 0, 0xFF, 0xFF, 0xFF]);
        for _ in 0..frames {
            bytes.extend([0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0]);
            // LZW minimum code size 2, then one sub-block holding clear, index 0, end.
            bytes.extend([2, 2, 0x44, 0x01, 0]);
        }
        bytes.push(0x3B);
        bytes
    }

    #[test]
    fn gif_frame_flood_rejected_from_header() {
        let err = probe_bytes(gif_with_frames(1, 40_000), Gif, &limits()).unwrap_err();
        assert!(
            matches!(
                err,
                ProbeError::TooManyFrames {
                    frames: 40_000,
                    limit: 1000
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn gif_at_frame_limit_decodes() {
        let info = probe_bytes(gif_with_frames(1, 1000), Gif, &limits()).unwrap();
        assert_eq!(info.frames, Some(1000));
        assert_eq!((info.width, info.height), (Some(1), Some(1)));
    }

    #[test]
    fn gif_oversized_frame_rejected_from_descriptor() {
        let mut bytes = gif_with_frames(1, 0);
        bytes.pop();
        // A 65535x65535 frame on the 1x1 screen.
        bytes.extend([0x2C, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0]);
        bytes.extend([2, 2, 0x44, 0x01, 0, 0x3B]);
        let err = probe_bytes(bytes, Gif, &limits()).unwrap_err();
        assert!(
            matches!(
                err,
                ProbeError::TooManyPixels {
                    width: 65535,
                    height: 65535,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn animation_budget_limits_frames_on_large_canvas() {
        // A 400x400 canvas at a 160,000-pixel limit leaves room for 10 frames.
        let small = ProbeLimits {
            max_source_pixels: 400 * 400,
            max_frames: 1000,
        };
        let err = probe_bytes(gif_with_frames(400, 11), Gif, &small).unwrap_err();
        assert!(
            matches!(
                err,
                ProbeError::TooManyFrames {
                    frames: 11,
                    limit: 10
                }
            ),
            "{err:?}"
        );

        let info = probe_bytes(gif_with_frames(400, 10), Gif, &small).unwrap();
        assert_eq!(info.frames, Some(10));
    }

    fn mp4_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut bytes = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        bytes.extend(kind);
        bytes.extend(payload);
        bytes
    }

    /// Builds an MP4 with one video track: mdat first, then moov, as a non-faststart writer does.
    fn synthetic_mp4(width: u16, height: u16, rotate_90: bool) -> Vec<u8> {
        let ftyp = mp4_box(b"ftyp", b"isom\0\0\x02\0isomiso2mp41");
        let mdat = mp4_box(b"mdat", &[0; 16]);
        let sample_offset = (ftyp.len() + 8) as u32;

        let mut mvhd = vec![0; 100];
        mvhd[12..16].copy_from_slice(&1000u32.to_be_bytes());
        mvhd[16..20].copy_from_slice(&2500u32.to_be_bytes());

        let mut tkhd = vec![0; 84];
        let (a, b, c, d): (i32, i32, i32, i32) = if rotate_90 {
            (0, 0x10000, -0x10000, 0)
        } else {
            (0x10000, 0, 0, 0x10000)
        };
        for (index, value) in [(0, a), (1, b), (3, c), (4, d)] {
            let at = 40 + index * 4;
            tkhd[at..at + 4].copy_from_slice(&value.to_be_bytes());
        }
        tkhd[76..80].copy_from_slice(&(u32::from(width) << 16).to_be_bytes());
        tkhd[80..84].copy_from_slice(&(u32::from(height) << 16).to_be_bytes());

        let mut hdlr = vec![0; 8];
        hdlr.extend(b"vide");
        hdlr.extend([0; 13]);

        let mut avc1 = vec![0; 78];
        avc1[24..26].copy_from_slice(&width.to_be_bytes());
        avc1[26..28].copy_from_slice(&height.to_be_bytes());
        let mut stsd = vec![0, 0, 0, 0, 0, 0, 0, 1];
        stsd.extend(mp4_box(b"avc1", &avc1));

        let mut stsz = vec![0; 8];
        stsz.extend(1u32.to_be_bytes());
        let mut stco = vec![0, 0, 0, 0, 0, 0, 0, 1];
        stco.extend(sample_offset.to_be_bytes());

        let stbl = [
            mp4_box(b"stsd", &stsd),
            mp4_box(b"stsz", &stsz),
            mp4_box(b"stco", &stco),
        ]
        .concat();
        let minf = mp4_box(b"minf", &mp4_box(b"stbl", &stbl));
        let mdia = mp4_box(b"mdia", &[mp4_box(b"hdlr", &hdlr), minf].concat());
        let trak = mp4_box(b"trak", &[mp4_box(b"tkhd", &tkhd), mdia].concat());
        let moov = mp4_box(b"moov", &[mp4_box(b"mvhd", &mvhd), trak].concat());
        [ftyp, mdat, moov].concat()
    }

    #[test]
    fn mp4_synthetic_reports_size_and_duration() {
        let info = probe_bytes(synthetic_mp4(640, 360, false), Mp4, &limits()).unwrap();
        assert_eq!((info.width, info.height), (Some(640), Some(360)));
        assert_eq!(info.duration_secs, Some(2.5));
        assert_eq!(info.frames, None);
    }

    #[test]
    fn mp4_rotation_swaps_display_size() {
        let info = probe_bytes(synthetic_mp4(640, 360, true), Mp4, &limits()).unwrap();
        assert_eq!((info.width, info.height), (Some(360), Some(640)));
    }

    #[test]
    fn mp4_declared_size_over_limit_rejected() {
        let err = probe_bytes(synthetic_mp4(20000, 20000, false), Mp4, &limits()).unwrap_err();
        assert!(
            matches!(
                err,
                ProbeError::TooManyPixels {
                    width: 20000,
                    height: 20000,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn mp4_truncated_moov_rejected() {
        let mut bytes = synthetic_mp4(640, 360, false);
        // The moov box is last, so its declared size now runs past the end of the file.
        bytes.truncate(bytes.len() - 10);
        let err = probe_bytes(bytes, Mp4, &limits()).unwrap_err();
        assert_eq!(err.code(), "corrupt_media", "{err}");
    }

    #[test]
    fn mp4_samples_outside_mdat_rejected() {
        let mut bytes = synthetic_mp4(640, 360, false);
        // Point the only chunk offset (the last four bytes, in stco) past the end of the file.
        let len = bytes.len();
        bytes[len - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = probe_bytes(bytes, Mp4, &limits()).unwrap_err();
        assert_eq!(err.code(), "corrupt_media", "{err}");
    }

    // --- Sniffing

    fn sniffed(head: &[u8]) -> Result<MediaType, &'static str> {
        sniff(head).map_err(|unsupported| unsupported.detected)
    }

    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let mut payload = major.to_vec();
        payload.extend([0; 4]);
        for brand in compatible {
            payload.extend(*brand);
        }
        mp4_box(b"ftyp", &payload)
    }

    #[test]
    fn sniff_reads_magic_bytes() {
        assert_eq!(sniffed(b"\x89PNG\r\n\x1a\n"), Ok(Png));
        assert_eq!(sniffed(b"\xFF\xD8\xFF\xE0"), Ok(Jpeg));
        assert_eq!(sniffed(b"GIF87a\x01\0\x01\0"), Ok(Gif));
        assert_eq!(sniffed(b"GIF89a\x01\0\x01\0"), Ok(Gif));
        assert_eq!(sniffed(b"RIFF\0\0\0\0WEBPVP8 "), Ok(Webp));
        assert_eq!(sniffed(b"RIFF\0\0\0\0AVI LIST"), Err("avi"));
    }

    #[test]
    fn sniff_prefers_magic_over_markup() {
        let mut head = b"RIFF\x20\0\0\0WEBPVP8L".to_vec();
        head.extend(b"<svg xmlns='http://www.w3.org/2000/svg'>");
        assert_eq!(sniffed(&head), Ok(Webp));
    }

    #[test]
    fn sniff_classifies_ftyp_brands() {
        assert_eq!(sniffed(&ftyp(b"isom", &[b"isom", b"avc1"])), Ok(Mp4));
        assert_eq!(sniffed(&ftyp(b"mp42", &[])), Ok(Mp4));
        assert_eq!(sniffed(&ftyp(b"M4V ", &[b"M4V ", b"mp42"])), Ok(Mp4));
        assert_eq!(sniffed(&ftyp(b"XAVC", &[b"mp42", b"iso2"])), Ok(Mp4));
        assert_eq!(sniffed(&ftyp(b"qt  ", &[b"qt  "])), Err("quicktime"));
        assert_eq!(sniffed(&ftyp(b"heic", &[b"mif1", b"heic"])), Err("heif"));
        assert_eq!(sniffed(&ftyp(b"mif1", &[b"mif1", b"heic"])), Err("heif"));
        assert_eq!(sniffed(&ftyp(b"avif", &[b"avif", b"mif1"])), Err("avif"));
        assert_eq!(sniffed(&ftyp(b"mif1", &[b"avif", b"miaf"])), Err("avif"));
        assert_eq!(sniffed(&ftyp(b"M4A ", &[b"M4A ", b"isom"])), Err("audio"));
        assert_eq!(sniffed(&ftyp(b"3gp5", &[b"3gp5", b"isom"])), Err("3gpp"));
        assert_eq!(sniffed(&ftyp(b"abcd", &[b"efgh"])), Err("unknown"));
        assert_eq!(sniffed(b"\0\0\0\x08wide\0\0\0\0mdat"), Err("quicktime"));
    }

    fn ebml_header(doc_type: &[u8]) -> Vec<u8> {
        let mut children = vec![0x42, 0x82, 0x80 | doc_type.len() as u8];
        children.extend(doc_type);
        let mut head = vec![0x1A, 0x45, 0xDF, 0xA3, 0x80 | children.len() as u8];
        head.extend(children);
        head
    }

    #[test]
    fn sniff_requires_webm_doc_type() {
        assert_eq!(sniffed(&ebml_header(b"webm")), Ok(Webm));
        assert_eq!(sniffed(&ebml_header(b"matroska")), Err("matroska"));
        assert_eq!(sniffed(&ebml_header(b"webmx")), Err("unknown"));
        // A size running past the sniffed bytes.
        assert_eq!(
            sniffed(&[0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42]),
            Err("unknown")
        );
    }

    #[test]
    fn sniff_finds_svg_past_prolog() {
        let cases: &[&[u8]] = &[
            b"<svg xmlns='http://www.w3.org/2000/svg'/>",
            b"\xEF\xBB\xBF  \n<svg>",
            b"<?xml version='1.0'?>\n<!-- drawn by hand -->\n<svg>",
            b"<!--a--><!--b-->\t<SVG>",
            b"<?xml version='1.0'?><!DOCTYPE svg PUBLIC '-//W3C//DTD SVG 1.1//EN' 'x'><svg/>",
            b"<?xml version='1.0'?><!DOCTYPE root [ <!ENTITY a 'b'> ]><svg/>",
            b"<svg:svg xmlns:svg='http://www.w3.org/2000/svg'/>",
            b"<!-- a comment that never closes within the head ... <svg",
            b"text before the markup <svg>",
        ];
        for head in cases {
            assert_eq!(
                sniffed(head),
                Err("svg"),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn sniff_finds_svg_in_utf16() {
        let utf16 = |text: &str, little_endian: bool| -> Vec<u8> {
            let mut bytes = if little_endian {
                vec![0xFF, 0xFE]
            } else {
                vec![0xFE, 0xFF]
            };
            for unit in text.encode_utf16() {
                let pair = if little_endian {
                    unit.to_le_bytes()
                } else {
                    unit.to_be_bytes()
                };
                bytes.extend(pair);
            }
            bytes
        };
        assert_eq!(
            sniffed(&utf16("<?xml version='1.0'?><svg/>", true)),
            Err("svg")
        );
        assert_eq!(sniffed(&utf16(" <svg/>", false)), Err("svg"));
        // Without a byte order mark.
        assert_eq!(sniffed(&utf16("<svg/>", true)[2..]), Err("svg"));
    }

    #[test]
    fn sniff_names_other_markup() {
        assert_eq!(sniffed(b"<!DOCTYPE html><html>"), Err("html"));
        assert_eq!(sniffed(b"  <html><body>"), Err("html"));
        assert_eq!(sniffed(b"<!-- x --><script>alert(1)</script>"), Err("html"));
        assert_eq!(sniffed(b"<?xml version='1.0'?><rss/>"), Err("xml"));
        assert_eq!(sniffed(b"<?xml version='1.0'?>"), Err("xml"));
        assert_eq!(
            sniffed(b"<feed xmlns='http://www.w3.org/2005/Atom'>"),
            Err("xml")
        );
    }

    #[test]
    fn sniff_names_other_formats() {
        let mut bmp = b"BM".to_vec();
        bmp.extend([0; 12]);
        bmp.extend(40u32.to_le_bytes());
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"%PDF-1.7\n", "pdf"),
            (b"PK\x03\x04\x14\0", "zip"),
            (b"II*\0\x08\0\0\0", "tiff"),
            (b"MM\0*\0\0\0\x08", "tiff"),
            (&bmp, "bmp"),
            (b"\x1F\x8B\x08\0", "gzip"),
            (b"hello, world\n", "text"),
            (b"BM is also how a sentence can start\n", "text"),
            (b"\0\x01\x02\x03\xFE", "unknown"),
        ];
        for (head, detected) in cases {
            assert_eq!(
                sniffed(head),
                Err(*detected),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    // --- Media types and errors

    #[test]
    fn media_type_mime_round_trips() {
        for media_type in MediaType::ALL {
            assert_eq!(MediaType::from_mime(media_type.mime()), Some(media_type));
        }
        assert_eq!(MediaType::from_mime(" Image/JPG ; q=0.9"), Some(Jpeg));
        assert_eq!(MediaType::from_mime("image/apng"), Some(Png));
        assert_eq!(MediaType::from_mime("image/svg+xml"), None);
    }

    #[test]
    fn media_type_extensions_and_kinds() {
        let extensions: Vec<_> = MediaType::ALL.iter().map(|t| t.extension()).collect();
        assert_eq!(extensions, ["png", "jpg", "gif", "webp", "mp4", "webm"]);
        let images: Vec<_> = MediaType::ALL.iter().map(|t| t.is_image()).collect();
        assert_eq!(images, [true, true, true, true, false, false]);
    }

    #[test]
    fn probe_error_codes() {
        let cases = [
            (corrupt("x"), "corrupt_media"),
            (
                ProbeError::TooManyPixels {
                    width: 1,
                    height: 2,
                    limit: 1,
                },
                "too_many_pixels",
            ),
            (
                ProbeError::TooManyFrames {
                    frames: 2,
                    limit: 1,
                },
                "too_many_frames",
            ),
            (unsupported_coding("x"), "unsupported_coding"),
            (ProbeError::Io(io::Error::other("x")), "io_error"),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code, "{err}");
        }
    }
}
