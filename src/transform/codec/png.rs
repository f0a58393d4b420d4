//! PNG and APNG decoding (through the `image` crate) and encoding (through the `png` crate).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Cursor;

use image::codecs::png::PngDecoder;
use image::{AnimationDecoder, DynamicImage, ImageDecoder, RgbaImage};

use super::{
    changed_bounds, check_size, collect_frames, finish_frames, image_error, image_limits,
    loop_count_of, take_orientation, DecodeHint, Decoded, Frame, Metadata, OutputFormat,
    PixelError, SourceFormat,
};

/// Keyword of the iTXt chunk that carries an XMP packet.
const XMP_KEYWORD: &str = "XML:com.adobe.xmp";

/// Decodes a PNG, or every frame of an APNG composited onto the full canvas.
pub(super) fn decode(bytes: &[u8], hint: &DecodeHint) -> Result<Decoded, PixelError> {
    let format = SourceFormat::Png;
    let mut decoder = PngDecoder::with_limits(Cursor::new(bytes), image_limits(hint))
        .map_err(|error| image_error(format, error))?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, 1, hint)?;
    // Unreadable metadata is dropped rather than failing the whole image.
    let profile = decoder.icc_profile().ok().flatten();
    let (orientation, exif) = take_orientation(find_exif(bytes));
    let xmp = decoder.xmp_metadata().ok().flatten();

    let is_animated = decoder
        .is_apng()
        .map_err(|error| image_error(format, error))?;
    let (mut frames, loop_count) = if is_animated {
        let animation = decoder.apng().map_err(|error| image_error(format, error))?;
        let loop_count = loop_count_of(animation.loop_count());
        let frames = collect_frames(animation.into_frames(), format, (width, height), hint)?;
        (frames, Some(loop_count))
    } else {
        let image = DynamicImage::from_decoder(decoder)
            .map_err(|error| image_error(format, error))?
            .into_rgba8();
        (vec![Frame::still(image)], None)
    };
    let loop_count = if frames.len() > 1 { loop_count } else { None };

    let (icc_converted, kept_icc) = finish_frames(&mut frames, profile, orientation, hint);
    let original = frames[0].image.dimensions();
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

/// Returns the stored size and the EXIF block from the headers.
pub(super) fn header(bytes: &[u8]) -> Option<(u32, u32, Option<Vec<u8>>)> {
    let decoder = PngDecoder::new(Cursor::new(bytes)).ok()?;
    let (width, height) = decoder.dimensions();
    Some((width, height, find_exif(bytes)))
}

/// Returns the EXIF block of a PNG: the `eXIf` chunk wherever it sits (the `image` crate reads
/// only the chunks before the pixel data), else the hex-encoded "Raw profile type exif" (or
/// "APP1") text chunk that ImageMagick writes.
fn find_exif(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut offset = 8;
    let mut raw_profile = None;
    while offset + 8 <= bytes.len() {
        let length = u32::from_be_bytes(bytes[offset..offset + 4].try_into().ok()?) as usize;
        let kind = &bytes[offset + 4..offset + 8];
        let data = bytes.get(offset + 8..(offset + 8).checked_add(length)?)?;
        match kind {
            b"eXIf" => return Some(data.to_vec()),
            b"tEXt" if raw_profile.is_none() => {
                if let Some(text) = data
                    .strip_prefix(b"Raw profile type exif\0")
                    .or_else(|| data.strip_prefix(b"Raw profile type APP1\0"))
                {
                    raw_profile = decode_raw_profile(text);
                }
            }
            b"IEND" => break,
            _ => {}
        }
        offset += 12 + length;
    }
    raw_profile
}

/// Decodes ImageMagick's raw profile text: a newline, the profile name, a line with the byte
/// count, then the bytes as hexadecimal spread over lines.
fn decode_raw_profile(text: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(text).ok()?;
    let mut lines = text.trim_start().lines();
    let _name = lines.next()?;
    let count: usize = lines.next()?.trim().parse().ok()?;
    let digits: Vec<u8> = lines.flat_map(|line| line.trim().bytes()).collect();
    let bytes: Vec<u8> = digits
        .chunks_exact(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(pair, 16).ok()
        })
        .collect::<Option<_>>()?;
    (bytes.len() >= count).then(|| bytes[..count].to_vec())
}

/// The smallest lossless PNG pixel layout found for an image.
enum Layout {
    /// Indexed colour: `palette` contains RGBA entries and `indices` one entry per pixel.
    Indexed {
        palette: Vec<[u8; 4]>,
        indices: Vec<u8>,
    },
    Grey {
        alpha: bool,
    },
    Rgb {
        alpha: bool,
    },
}

/// Picks the layout: a palette when the image has at most 256 distinct RGBA values, else grey
/// when every pixel has R = G = B, else RGB; with an alpha channel only when some pixel needs one.
fn choose_layout(image: &RgbaImage) -> Layout {
    let mut alpha = false;
    let mut grey = true;
    for pixel in image.pixels() {
        let [r, g, b, a] = pixel.0;
        alpha |= a != 255;
        grey &= r == g && g == b;
    }
    if let Some((palette, indices)) = palette_of(image) {
        return Layout::Indexed { palette, indices };
    }
    if grey {
        Layout::Grey { alpha }
    } else {
        Layout::Rgb { alpha }
    }
}

/// Returns a palette and per-pixel indices when `image` has at most 256 distinct colours. Fully
/// transparent pixels all share one entry whatever their RGB.
fn palette_of(image: &RgbaImage) -> Option<(Vec<[u8; 4]>, Vec<u8>)> {
    let mut lookup: HashMap<[u8; 4], u8> = HashMap::new();
    let mut palette = Vec::new();
    let mut indices = Vec::with_capacity(image.as_raw().len() / 4);
    let mut previous: Option<([u8; 4], u8)> = None;
    for pixel in image.pixels() {
        let color = if pixel.0[3] == 0 { [0; 4] } else { pixel.0 };
        // Runs of one colour are common, and skipping the hash lookup for them is much faster.
        if let Some((last, index)) = previous {
            if last == color {
                indices.push(index);
                continue;
            }
        }
        let index = match lookup.get(&color) {
            Some(&index) => index,
            None => {
                if palette.len() == 256 {
                    return None;
                }
                let index = palette.len() as u8;
                palette.push(color);
                lookup.insert(color, index);
                index
            }
        };
        previous = Some((color, index));
        indices.push(index);
    }

    // Opaque entries go last so the tRNS chunk can stop before them.
    let mut order: Vec<usize> = (0..palette.len()).collect();
    order.sort_by_key(|&i| palette[i][3] == 255);
    let mut remap = vec![0u8; palette.len()];
    for (new_index, &old_index) in order.iter().enumerate() {
        remap[old_index] = new_index as u8;
    }
    let palette = order.iter().map(|&i| palette[i]).collect();
    for index in &mut indices {
        *index = remap[usize::from(*index)];
    }
    Some((palette, indices))
}

/// Returns the smallest bit depth that can index `entries` palette entries.
fn index_depth(entries: usize) -> png::BitDepth {
    match entries {
        0..=2 => png::BitDepth::One,
        3..=4 => png::BitDepth::Two,
        5..=16 => png::BitDepth::Four,
        _ => png::BitDepth::Eight,
    }
}

/// Packs 8-bit indices into rows of `depth` bits per pixel, most significant bits first.
fn pack_indices(indices: &[u8], width: usize, depth: png::BitDepth) -> Vec<u8> {
    let bits = depth as usize;
    if bits == 8 {
        return indices.to_vec();
    }
    let per_byte = 8 / bits;
    let row_bytes = width.div_ceil(per_byte);
    let mut out = Vec::with_capacity(row_bytes * indices.len() / width.max(1));
    for row in indices.chunks(width) {
        for group in row.chunks(per_byte) {
            let mut byte = 0u8;
            for (i, &index) in group.iter().enumerate() {
                byte |= index << (8 - bits * (i + 1));
            }
            out.push(byte);
        }
    }
    out
}

fn metadata_info<'a>(info: &mut png::Info<'a>, metadata: Option<&'a Metadata>) {
    if let Some(metadata) = metadata {
        info.icc_profile = metadata.icc.as_deref().map(Cow::Borrowed);
        info.exif_metadata = metadata.exif.as_deref().map(Cow::Borrowed);
    }
}

fn add_xmp<W: std::io::Write>(
    encoder: &mut png::Encoder<'_, W>,
    metadata: Option<&Metadata>,
) -> Result<(), PixelError> {
    if let Some(xmp) = metadata.and_then(|metadata| metadata.xmp.as_deref()) {
        encoder
            .add_itxt_chunk(
                XMP_KEYWORD.to_string(),
                String::from_utf8_lossy(xmp).into_owned(),
            )
            .map_err(|error| PixelError::encode(OutputFormat::Png, error))?;
    }
    Ok(())
}

/// Encodes one image as an 8-bit (or fewer bits, for small palettes) lossless PNG.
pub(super) fn encode(
    image: &RgbaImage,
    metadata: Option<&Metadata>,
) -> Result<Vec<u8>, PixelError> {
    let error = |error: png::EncodingError| PixelError::encode(OutputFormat::Png, error);
    let (width, height) = image.dimensions();
    let layout = choose_layout(image);
    let mut info = png::Info::with_size(width, height);
    metadata_info(&mut info, metadata);

    let data: Cow<'_, [u8]> = match &layout {
        Layout::Indexed { palette, indices } => {
            info.color_type = png::ColorType::Indexed;
            info.bit_depth = index_depth(palette.len());
            info.palette = Some(palette.iter().flat_map(|c| [c[0], c[1], c[2]]).collect());
            let transparent: Vec<u8> = palette
                .iter()
                .map(|c| c[3])
                .take_while(|&alpha| alpha != 255)
                .collect();
            if !transparent.is_empty() {
                info.trns = Some(Cow::Owned(transparent));
            }
            Cow::Owned(pack_indices(indices, width as usize, info.bit_depth))
        }
        Layout::Grey { alpha } => {
            info.bit_depth = png::BitDepth::Eight;
            let channels = if *alpha { 2 } else { 1 };
            info.color_type = if *alpha {
                png::ColorType::GrayscaleAlpha
            } else {
                png::ColorType::Grayscale
            };
            Cow::Owned(
                image
                    .pixels()
                    .flat_map(|p| [p.0[0], p.0[3]].into_iter().take(channels))
                    .collect(),
            )
        }
        Layout::Rgb { alpha: true } => {
            info.bit_depth = png::BitDepth::Eight;
            info.color_type = png::ColorType::Rgba;
            Cow::Borrowed(image.as_raw())
        }
        Layout::Rgb { alpha: false } => {
            info.bit_depth = png::BitDepth::Eight;
            info.color_type = png::ColorType::Rgb;
            Cow::Owned(
                image
                    .pixels()
                    .flat_map(|p| [p.0[0], p.0[1], p.0[2]])
                    .collect(),
            )
        }
    };

    let mut out = Vec::new();
    let mut encoder = png::Encoder::with_info(&mut out, info).map_err(error)?;
    // Indexed images are flat graphics, where filters rarely help and a thorough DEFLATE search
    // finds long repeats. For more colourful images the fast PNG-tuned compressor is the better
    // trade: on three 500-600 px test images (two photos, one logo) the thorough search saved
    // between -2% and 8% of the size at 15 to 40 times the encoding time.
    if matches!(layout, Layout::Indexed { .. }) {
        encoder.set_compression(png::Compression::Balanced);
        encoder.set_filter(png::Filter::NoFilter);
    } else {
        encoder.set_compression(png::Compression::Fast);
        encoder.set_filter(png::Filter::Adaptive);
    }
    add_xmp(&mut encoder, metadata)?;

    let mut writer = encoder.write_header().map_err(error)?;
    writer.write_image_data(&data).map_err(error)?;
    writer.finish().map_err(error)?;
    Ok(out)
}

/// Encodes an animation as an 8-bit RGBA APNG. After the first frame, each frame stores only
/// the rectangle that changed, replacing those pixels outright.
pub(super) fn encode_animation(
    frames: &[Frame],
    loop_count: Option<u16>,
    metadata: Option<&Metadata>,
) -> Result<Vec<u8>, PixelError> {
    let error = |error: png::EncodingError| PixelError::encode(OutputFormat::Png, error);
    let (width, height) = frames[0].image.dimensions();
    let mut info = png::Info::with_size(width, height);
    info.color_type = png::ColorType::Rgba;
    info.bit_depth = png::BitDepth::Eight;
    metadata_info(&mut info, metadata);
    let mut out = Vec::new();
    let mut encoder = png::Encoder::with_info(&mut out, info).map_err(error)?;
    encoder.set_compression(png::Compression::Fast);
    encoder
        .set_animated(frames.len() as u32, u32::from(loop_count.unwrap_or(0)))
        .map_err(error)?;
    add_xmp(&mut encoder, metadata)?;

    let mut writer = encoder.write_header().map_err(error)?;
    let mut previous: Option<&RgbaImage> = None;
    for frame in frames {
        // APNG delays are a fraction of a second with 16-bit parts, so long delays lose
        // precision: 1/1000 s units up to 65.535 s, 1/100 s units beyond.
        let (numerator, denominator) = match u16::try_from(frame.delay_ms) {
            Ok(ms) => (ms, 1000),
            Err(_) => (u16::try_from(frame.delay_ms / 10).unwrap_or(u16::MAX), 100),
        };
        writer
            .set_frame_delay(numerator, denominator)
            .map_err(error)?;
        writer.set_blend_op(png::BlendOp::Source).map_err(error)?;
        writer.set_dispose_op(png::DisposeOp::None).map_err(error)?;
        let (x, y, w, h) = match previous {
            None => (0, 0, width, height),
            Some(previous) => changed_bounds(previous, &frame.image).unwrap_or((0, 0, 1, 1)),
        };
        writer.reset_frame_position().map_err(error)?;
        writer.set_frame_dimension(w, h).map_err(error)?;
        writer.set_frame_position(x, y).map_err(error)?;
        let region = image::imageops::crop_imm(&frame.image, x, y, w, h).to_image();
        writer.write_image_data(region.as_raw()).map_err(error)?;
        previous = Some(&frame.image);
    }
    writer.finish().map_err(error)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{decode as decode_any, encode as encode_any, EncodeOptions};
    use super::*;

    fn decode_fixture(name: &str) -> Decoded {
        decode_any(&fixture(name), DecodeHint::default())
            .unwrap_or_else(|error| panic!("{name}: {error}"))
    }

    fn transparent_count(image: &RgbaImage) -> usize {
        image.pixels().filter(|p| p.0[3] == 0).count()
    }

    #[test]
    fn sixteen_bit_grey_is_a_smooth_gradient() {
        let plain = decode_fixture("png16-gray-basn0g16.png");
        let interlaced = decode_fixture("png16-gray-interlaced-basi0g16.png");
        let image = &plain.frames[0].image;
        assert_eq!(image.dimensions(), (32, 32));
        // Neighbouring pixels of a gradient differ little; byte-swapped samples look like noise.
        let jumps: u32 = image
            .rows()
            .flat_map(|row| {
                let row: Vec<_> = row.collect();
                (1..row.len())
                    .map(|i| u32::from(row[i].0[0].abs_diff(row[i - 1].0[0])))
                    .collect::<Vec<_>>()
            })
            .sum();
        assert!(
            jumps / (32 * 31) < 16,
            "mean horizontal step {}",
            jumps / (32 * 31)
        );
        assert!(mean_abs_diff(image, &interlaced.frames[0].image) < 1.0);
    }

    #[test]
    fn sixteen_bit_rgba_keeps_alpha_and_matches_interlaced() {
        let plain = decode_fixture("png16-rgba-basn6a16.png");
        let interlaced = decode_fixture("png16-rgba-interlaced-basi6a16.png");
        assert!(plain.has_alpha);
        assert_eq!(plain.frames[0].image, interlaced.frames[0].image);
    }

    #[test]
    fn sixteen_bit_grey_alpha_keeps_alpha() {
        let decoded = decode_fixture("png16-gray-alpha-basn4a16.png");
        let transparent = transparent_count(&decoded.frames[0].image);
        assert!(
            transparent.abs_diff(124) <= 2,
            "{transparent} transparent pixels"
        );
    }

    #[test]
    fn trns_colour_keys_become_alpha() {
        let rgb16 = decode_fixture("png16-rgb-trns-tbgn2c16.png");
        let transparent = transparent_count(&rgb16.frames[0].image);
        assert!(
            transparent.abs_diff(453) <= 10,
            "{transparent} transparent pixels"
        );
        let grey = decode_fixture("png-gray-trns-key.png");
        let transparent = transparent_count(&grey.frames[0].image);
        assert!(
            transparent.abs_diff(559) <= 41,
            "{transparent} transparent pixels"
        );
    }

    #[test]
    fn palette_trns_becomes_alpha() {
        let decoded = decode_fixture("png-palette-trns-tbbn3p08.png");
        let image = &decoded.frames[0].image;
        let share = transparent_count(image) as f64 / f64::from(image.width() * image.height());
        assert!((share - 0.44).abs() < 0.05, "{share:.2} transparent");
        let empty = decode_fixture("png-palette-all-transparent.png");
        assert_eq!(transparent_count(&empty.frames[0].image), 300 * 300);
    }

    #[test]
    fn grey_alpha_decodes_with_transparency() {
        let decoded = decode_fixture("png-gray-alpha-8bit.png");
        let image = &decoded.frames[0].image;
        assert_eq!(image.dimensions(), (400, 300));
        let share = transparent_count(image) as f64 / 120_000.0;
        assert!((share - 0.59).abs() <= 0.03, "{share:.2} transparent");
    }

    #[test]
    fn one_pixel_interlaced_palette_decodes() {
        let decoded = decode_fixture("png-1x1-interlaced-palette.png");
        assert_eq!((decoded.width, decoded.height), (1, 1));
    }

    #[test]
    fn exif_orientation_in_png_is_applied() {
        let decoded = decode_fixture("orient-png-exif3.png");
        let stored = image::load_from_memory(&fixture("orient-png-exif3.png"))
            .unwrap()
            .into_rgba8();
        let rotated = image::imageops::rotate180(&stored);
        assert!(mean_abs_diff(&decoded.frames[0].image, &rotated) < 1.0);
    }

    #[test]
    fn apng_keeps_frames_and_loop_count() {
        let decoded = decode_fixture("anim-apng-20f.png");
        assert_eq!(decoded.frames.len(), 20);
        assert_eq!((decoded.width, decoded.height), (100, 100));
        assert!(decoded.loop_count.is_some());
        let bytes = encode_any(
            &decoded.frames,
            decoded.loop_count,
            OutputFormat::Png,
            &EncodeOptions::default(),
        )
        .unwrap();
        let again = decode_any(&bytes, DecodeHint::default()).unwrap();
        assert_eq!(again.frames.len(), 20);
        assert_eq!(again.loop_count, decoded.loop_count);
        for (before, after) in decoded.frames.iter().zip(&again.frames) {
            assert_eq!(before.delay_ms, after.delay_ms);
            assert_eq!(before.image, after.image);
        }
    }

    #[test]
    fn broken_files_are_errors() {
        for name in [
            "png-signature-only.png",
            "trunc-png.png",
            "corrupt-png-no-idat-xdtn0g01.png",
        ] {
            let error = decode_any(&fixture(name), DecodeHint::default()).unwrap_err();
            assert!(error.is_client_error(), "{name}: {error}");
        }
    }

    #[test]
    fn round_trips_every_layout_losslessly() {
        let decoded = decode_fixture("skimage-logo-alpha.png");
        let grey = DynamicImage::ImageRgba8(decoded.frames[0].image.clone())
            .grayscale()
            .into_rgba8();
        let few_colours =
            RgbaImage::from_fn(64, 8, |x, _| image::Rgba([(x % 3) as u8 * 100, 0, 0, 255]));
        let opaque = RgbaImage::from_fn(64, 64, |x, y| {
            image::Rgba([x as u8 * 4, y as u8 * 4, 7, 255])
        });
        for image in [&decoded.frames[0].image, &grey, &few_colours, &opaque] {
            let bytes = encode(image, None).unwrap();
            let again = decode_any(&bytes, DecodeHint::default()).unwrap();
            let transparent_equal = image
                .pixels()
                .zip(again.frames[0].image.pixels())
                .all(|(a, b)| a == b || (a.0[3] == 0 && b.0[3] == 0));
            assert!(transparent_equal, "PNG round trip changed pixels");
        }
    }

    #[test]
    fn reads_imagemagick_raw_exif_profiles() {
        let text = b"\nexif\n      8\n45786966\n00004d4d\n";
        assert_eq!(decode_raw_profile(text), Some(b"Exif\0\0MM".to_vec()));
        assert_eq!(decode_raw_profile(b"\nexif\n  9\n4578\n"), None);
    }

    #[test]
    fn packs_small_palettes() {
        assert_eq!(
            pack_indices(&[1, 0, 1, 1, 0, 0, 0, 1, 1], 9, png::BitDepth::One),
            [0b1011_0001, 0b1000_0000]
        );
        assert_eq!(
            pack_indices(&[3, 2, 1], 3, png::BitDepth::Two),
            [0b1110_0100]
        );
    }

    #[test]
    fn writes_metadata_only_when_asked() {
        let image = RgbaImage::from_pixel(4, 4, image::Rgba([1, 2, 3, 255]));
        let plain = encode(&image, None).unwrap();
        assert!(!plain
            .windows(4)
            .any(|w| w == b"iCCP" || w == b"eXIf" || w == b"iTXt"));
        let metadata = Metadata {
            exif: Some(b"MM\0\x2a\0\0\0\x08\0\0".to_vec()),
            xmp: Some(b"<x:xmpmeta/>".to_vec()),
            icc: Some(lcms2::Profile::new_srgb().icc().unwrap()),
        };
        let tagged = encode(&image, Some(&metadata)).unwrap();
        for chunk in [b"iCCP", b"eXIf", b"iTXt"] {
            assert!(tagged.windows(4).any(|w| w == chunk), "missing {chunk:?}");
        }
    }
}
