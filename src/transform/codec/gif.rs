//! GIF decoding (through the `image` crate) and encoding (through the `gif` crate, with
//! NeuQuant colour quantisation from `color_quant`).
//!
//! kura's loop count is the number of times an animation plays. GIF stores it differently: the
//! NETSCAPE2.0 extension's field is the number of repeats after the first play, 0 means
//! forever, and a GIF without the extension plays once. Browsers follow that reading.

use std::collections::HashMap;
use std::io::Cursor;

use image::codecs::gif::GifDecoder;
use image::{AnimationDecoder, ImageDecoder, RgbaImage};

use super::{
    changed_bounds, check_size, collect_frames, image_error, image_limits, DecodeHint, Decoded,
    Frame, Metadata, OutputFormat, PixelError, SourceFormat,
};

/// Alpha below this is written as the transparent palette entry, since GIF has 1-bit alpha.
const ALPHA_THRESHOLD: u8 = 128;
/// NeuQuant's sampling factor: 1 looks at every pixel, 30 at one in 30. 10 is the usual
/// balance of speed and palette quality.
const NEUQUANT_SAMPLING: i32 = 10;

/// Decodes every frame of a GIF, composited onto the full canvas with each frame's disposal.
pub(super) fn decode(bytes: &[u8], hint: &DecodeHint) -> Result<Decoded, PixelError> {
    let format = SourceFormat::Gif;
    // The logical screen size sits right after the signature. Checking it before the decoder
    // reads any frame rejects a huge canvas without reading further.
    let (declared_width, declared_height, _) = header(bytes)
        .ok_or_else(|| PixelError::invalid(format, "the file ends inside the header"))?;
    check_size(declared_width, declared_height, 1, hint)?;
    let mut decoder =
        GifDecoder::new(Cursor::new(bytes)).map_err(|error| image_error(format, error))?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, 1, hint)?;
    decoder
        .set_limits(image_limits(hint))
        .map_err(|error| image_error(format, error))?;
    let frames = collect_frames(decoder.into_frames(), format, (width, height), hint)?;
    let loop_count = (frames.len() > 1).then(|| plays_of(bytes));
    Ok(Decoded::from_frames(
        frames,
        loop_count,
        format,
        false,
        (width, height),
        Metadata::default(),
    ))
}

/// Returns the logical screen size from the header. GIF has no EXIF block.
pub(super) fn header(bytes: &[u8]) -> Option<(u32, u32, Option<Vec<u8>>)> {
    let screen = bytes.get(6..10)?;
    let width = u32::from(u16::from_le_bytes([screen[0], screen[1]]));
    let height = u32::from(u16::from_le_bytes([screen[2], screen[3]]));
    Some((width, height, None))
}

/// Returns how many times a GIF animation plays (0 = forever) from its NETSCAPE2.0 (or
/// ANIMEXTS1.0) application extension.
fn plays_of(bytes: &[u8]) -> u16 {
    for signature in [b"NETSCAPE2.0", b"ANIMEXTS1.0"] {
        // The signature follows the extension introducer 0x21 0xFF and the block size 11, and
        // is followed by a 3-byte sub-block: id 1 and a little-endian repeat count.
        let found = bytes.windows(signature.len() + 4).position(|window| {
            &window[..signature.len()] == signature
                && window[signature.len()] == 3
                && window[signature.len() + 1] == 1
        });
        if let Some(position) = found {
            let start = position + signature.len() + 2;
            let repeats = u16::from_le_bytes([bytes[start], bytes[start + 1]]);
            return if repeats == 0 {
                0
            } else {
                repeats.saturating_add(1)
            };
        }
    }
    1
}

/// Encodes frames as a GIF: an animation when there are several frames.
///
/// Each frame gets its own palette. Fully opaque animations store, after the first frame, only
/// the rectangle that changed. Animations with transparency store whole frames that replace the
/// previous one, because a GIF frame cannot make an already drawn pixel transparent again.
pub(super) fn encode(frames: &[Frame], loop_count: Option<u16>) -> Result<Vec<u8>, PixelError> {
    let format = OutputFormat::Gif;
    let error = |error: gif::EncodingError| PixelError::encode(format, error);
    let (width, height) = frames[0].image.dimensions();
    let (Ok(width16), Ok(height16)) = (u16::try_from(width), u16::try_from(height)) else {
        return Err(PixelError::UnsupportedOutput {
            format: "GIF",
            detail: format!("{width}x{height} px exceeds the GIF limit of 65535 px per side"),
        });
    };
    let animated = frames.len() > 1;
    let transparent = frames.iter().any(|frame| {
        frame
            .image
            .pixels()
            .any(|pixel| pixel.0[3] < ALPHA_THRESHOLD)
    });
    let mut out = Vec::new();
    {
        let mut encoder = gif::Encoder::new(&mut out, width16, height16, &[]).map_err(error)?;
        if animated {
            match loop_count.unwrap_or(0) {
                0 => encoder.set_repeat(gif::Repeat::Infinite).map_err(error)?,
                1 => {}
                plays => encoder
                    .set_repeat(gif::Repeat::Finite(plays - 1))
                    .map_err(error)?,
            }
        }
        let mut previous: Option<&RgbaImage> = None;
        for frame in frames {
            let (x, y, w, h) = match previous {
                Some(previous) if !transparent => {
                    changed_bounds(previous, &frame.image).unwrap_or((0, 0, 1, 1))
                }
                _ => (0, 0, width, height),
            };
            let region = image::imageops::crop_imm(&frame.image, x, y, w, h).to_image();
            let mut gif_frame = quantize(&region);
            gif_frame.left = x as u16;
            gif_frame.top = y as u16;
            gif_frame.delay = u16::try_from(frame.delay_ms.div_ceil(10)).unwrap_or(u16::MAX);
            gif_frame.dispose = if transparent {
                gif::DisposalMethod::Background
            } else {
                gif::DisposalMethod::Keep
            };
            encoder.write_frame(&gif_frame).map_err(error)?;
            previous = Some(&frame.image);
        }
    }
    Ok(out)
}

/// Builds an indexed GIF frame: an exact palette when the image has at most 255 opaque colours,
/// else a 255-colour NeuQuant palette. The last palette entry is the transparent one when needed.
fn quantize(image: &RgbaImage) -> gif::Frame<'static> {
    let (width, height) = image.dimensions();
    let has_transparency = image.pixels().any(|pixel| pixel.0[3] < ALPHA_THRESHOLD);
    let colours = if has_transparency { 255 } else { 256 };
    let (palette, indices) = exact_palette(image, colours).unwrap_or_else(|| {
        let opaque: Vec<u8> = image
            .pixels()
            .filter(|pixel| pixel.0[3] >= ALPHA_THRESHOLD)
            .flat_map(|pixel| [pixel.0[0], pixel.0[1], pixel.0[2], 255])
            .collect();
        let quantizer = color_quant::NeuQuant::new(NEUQUANT_SAMPLING, colours, &opaque);
        let indices = image
            .pixels()
            .map(|pixel| {
                if pixel.0[3] < ALPHA_THRESHOLD {
                    0
                } else {
                    quantizer.index_of(&[pixel.0[0], pixel.0[1], pixel.0[2], 255]) as u8
                }
            })
            .collect::<Vec<_>>();
        (quantizer.color_map_rgb(), indices)
    });
    let mut palette = palette;
    let mut indices = indices;
    let mut transparent = None;
    if has_transparency {
        let index = (palette.len() / 3) as u8;
        palette.extend_from_slice(&[0, 0, 0]);
        for (slot, pixel) in indices.iter_mut().zip(image.pixels()) {
            if pixel.0[3] < ALPHA_THRESHOLD {
                *slot = index;
            }
        }
        transparent = Some(index);
    }
    gif::Frame {
        width: width as u16,
        height: height as u16,
        buffer: indices.into(),
        palette: Some(palette),
        transparent,
        ..gif::Frame::default()
    }
}

/// Returns an RGB palette and indices when the opaque pixels of `image` use at most `limit`
/// colours. Transparent pixels get index 0 here and are remapped by the caller.
fn exact_palette(image: &RgbaImage, limit: usize) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut lookup: HashMap<[u8; 3], u8> = HashMap::new();
    let mut palette = Vec::new();
    let mut indices = Vec::with_capacity((image.width() * image.height()) as usize);
    for pixel in image.pixels() {
        if pixel.0[3] < ALPHA_THRESHOLD {
            indices.push(0);
            continue;
        }
        let colour = [pixel.0[0], pixel.0[1], pixel.0[2]];
        let index = match lookup.get(&colour) {
            Some(&index) => index,
            None => {
                if lookup.len() == limit {
                    return None;
                }
                let index = lookup.len() as u8;
                lookup.insert(colour, index);
                palette.extend_from_slice(&colour);
                index
            }
        };
        indices.push(index);
    }
    if palette.is_empty() {
        palette.extend_from_slice(&[0, 0, 0]);
    }
    Some((palette, indices))
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

    #[test]
    fn keeps_frames_delays_and_loop_count() {
        let decoded = decode_fixture("anim-10f-loop.gif");
        assert_eq!(decoded.frames.len(), 10);
        assert_eq!((decoded.width, decoded.height), (370, 285));
        // The NETSCAPE field stores 2 repeats, so the animation plays 3 times.
        assert_eq!(decoded.loop_count, Some(3));
        let bytes = encode_any(
            &decoded.frames,
            decoded.loop_count,
            OutputFormat::Gif,
            &EncodeOptions::default(),
        )
        .unwrap();
        assert!(bytes.starts_with(b"GIF89a"));
        let again = decode_any(&bytes, DecodeHint::default()).unwrap();
        assert_eq!(again.frames.len(), 10);
        assert_eq!(again.loop_count, Some(3));
        for (before, after) in decoded.frames.iter().zip(&again.frames) {
            assert_eq!(before.delay_ms, after.delay_ms);
            let difference = mean_abs_diff(&before.image, &after.image);
            assert!(
                difference < 3.0,
                "re-encoded frame differs by {difference:.2}"
            );
        }
    }

    #[test]
    fn resized_animation_keeps_every_frame() {
        let decoded = decode_fixture("anim-10f-loop.gif");
        let frames: Vec<Frame> = decoded
            .frames
            .iter()
            .map(|frame| Frame {
                image: super::super::super::ops::resize(&frame.image, 185, 143),
                delay_ms: frame.delay_ms,
            })
            .collect();
        let bytes = encode(&frames, decoded.loop_count).unwrap();
        let again = decode_any(&bytes, DecodeHint::default()).unwrap();
        assert_eq!((again.width, again.height), (185, 143));
        assert_eq!(again.frames.len(), 10);
        assert_eq!(again.loop_count, Some(3));
    }

    #[test]
    fn keeps_transparency_through_disposal() {
        let decoded = decode_fixture("anim-30f-transparent.gif");
        assert_eq!(decoded.frames.len(), 30);
        assert!(decoded.has_alpha);
        let bytes = encode_any(
            &decoded.frames,
            decoded.loop_count,
            OutputFormat::Gif,
            &EncodeOptions::default(),
        )
        .unwrap();
        let again = decode_any(&bytes, DecodeHint::default()).unwrap();
        for (before, after) in decoded.frames.iter().zip(&again.frames) {
            let opaque_before = before
                .image
                .pixels()
                .filter(|p| p.0[3] >= ALPHA_THRESHOLD)
                .count();
            let opaque_after = after.image.pixels().filter(|p| p.0[3] == 255).count();
            assert_eq!(opaque_before, opaque_after);
        }
    }

    #[test]
    fn reads_loop_fields() {
        assert_eq!(plays_of(b"GIF89a"), 1);
        assert_eq!(plays_of(b"..NETSCAPE2.0\x03\x01\x00\x00\x00"), 0);
        assert_eq!(plays_of(b"..NETSCAPE2.0\x03\x01\x02\x00\x00"), 3);
    }

    #[test]
    fn one_play_writes_no_loop_extension() {
        let frames = [
            Frame {
                image: RgbaImage::from_pixel(4, 4, image::Rgba([255, 0, 0, 255])),
                delay_ms: 100,
            },
            Frame {
                image: RgbaImage::from_pixel(4, 4, image::Rgba([0, 0, 255, 255])),
                delay_ms: 100,
            },
        ];
        let bytes = encode(&frames, Some(1)).unwrap();
        assert!(!bytes.windows(11).any(|w| w == b"NETSCAPE2.0"));
        assert_eq!(
            decode_any(&bytes, DecodeHint::default())
                .unwrap()
                .loop_count,
            Some(1)
        );
    }

    #[test]
    fn hostile_files_fail_cleanly() {
        for name in [
            "bomb-gif-65535x66601-44B.gif",
            "trunc-gif.gif",
            "anim-invalid-multiframe.gif",
            "bomb-gif-frame-extents.gif",
        ] {
            match decode_any(&fixture(name), DecodeHint::default()) {
                Ok(decoded) => assert!(decoded.width <= 1000 && decoded.height <= 1000, "{name}"),
                Err(error) => assert!(error.is_client_error(), "{name}: {error}"),
            }
        }
    }

    #[test]
    fn frame_limit_is_enforced() {
        let hint = DecodeHint {
            max_frames: 5,
            ..DecodeHint::default()
        };
        let error = decode_any(&fixture("anim-10f-loop.gif"), hint).unwrap_err();
        assert_eq!(error, PixelError::TooManyFrames { limit: 5 });
    }

    #[test]
    fn photos_quantise_closely() {
        let decoded = decode_any(&fixture("rocket.jpg"), DecodeHint::default()).unwrap();
        let bytes = encode(&decoded.frames, None).unwrap();
        let again = decode_any(&bytes, DecodeHint::default()).unwrap();
        let difference = mean_abs_diff(&decoded.frames[0].image, &again.frames[0].image);
        assert!(
            difference < 6.0,
            "quantised photo differs by {difference:.2}"
        );
    }
}
