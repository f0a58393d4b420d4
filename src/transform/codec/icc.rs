//! Colour management: embedded ICC profiles and CMYK samples to sRGB, through Little CMS 2.

use image::RgbaImage;
use lcms2::{Intent, PixelFormat, Profile, Transform};

/// Size of the fixed ICC profile header that precedes the tag count.
const HEADER_LEN: usize = 128;

/// Converts `image` in place from the RGB or grey colour space described by `profile` to sRGB.
///
/// Returns whether the pixels changed. A profile that Little CMS cannot parse, one for another
/// colour space, and one that describes sRGB itself leave the pixels alone, so a broken profile
/// means "treat as sRGB" rather than an error.
pub(super) fn rgba_to_srgb(image: &mut RgbaImage, profile: &[u8]) -> bool {
    if describes_srgb(profile) {
        return false;
    }
    let Ok(source) = Profile::new_icc(profile) else {
        return false;
    };
    let srgb = Profile::new_srgb();
    match source.color_space() {
        lcms2::ColorSpaceSignature::RgbData => {
            // Without the copy-alpha flag Little CMS leaves the fourth byte alone, which is what
            // an in-place conversion of straight RGBA needs.
            let Ok(transform) = Transform::<[u8; 4], [u8; 4]>::new(
                &source,
                PixelFormat::RGBA_8,
                &srgb,
                PixelFormat::RGBA_8,
                Intent::Perceptual,
            ) else {
                return false;
            };
            let pixels: &mut [u8] = image.as_mut();
            transform.transform_in_place(bytemuck_rgba(pixels));
            true
        }
        lcms2::ColorSpaceSignature::GrayData => {
            let Ok(transform) = Transform::<u8, [u8; 3]>::new(
                &source,
                PixelFormat::GRAY_8,
                &srgb,
                PixelFormat::RGB_8,
                Intent::Perceptual,
            ) else {
                return false;
            };
            // Decoders expand grey to R = G = B, so the red channel is the grey sample.
            let grey: Vec<u8> = image.pixels().map(|pixel| pixel.0[0]).collect();
            let mut rgb = vec![[0u8; 3]; grey.len()];
            transform.transform_pixels(&grey, &mut rgb);
            for (pixel, converted) in image.pixels_mut().zip(rgb) {
                pixel.0[..3].copy_from_slice(&converted);
            }
            true
        }
        _ => false,
    }
}

/// Converts packed CMYK samples to an opaque sRGB image.
///
/// `inverted` means the samples are stored as 255 − ink, the convention of Adobe's JPEG writers
/// (any JPEG with an Adobe APP14 segment). With a usable CMYK `profile` the conversion goes
/// through it; otherwise each channel is `(255 − C)(255 − K) / 255`, which is how browsers
/// show untagged CMYK.
pub(super) fn cmyk_to_srgb(
    width: u32,
    height: u32,
    samples: &[u8],
    inverted: bool,
    profile: Option<&[u8]>,
) -> RgbaImage {
    let ink: Vec<[u8; 4]> = samples
        .chunks_exact(4)
        .map(|pixel| {
            let mut pixel = [pixel[0], pixel[1], pixel[2], pixel[3]];
            if inverted {
                pixel = pixel.map(|value| 255 - value);
            }
            pixel
        })
        .collect();
    let rgb = profile
        .and_then(|profile| cmyk_through_profile(&ink, profile))
        .unwrap_or_else(|| ink.iter().map(|&pixel| naive_cmyk_to_rgb(pixel)).collect());
    let mut out = RgbaImage::new(width, height);
    for (pixel, color) in out.pixels_mut().zip(rgb) {
        *pixel = image::Rgba([color[0], color[1], color[2], 255]);
    }
    out
}

fn cmyk_through_profile(ink: &[[u8; 4]], profile: &[u8]) -> Option<Vec<[u8; 3]>> {
    let source = Profile::new_icc(profile).ok()?;
    if source.color_space() != lcms2::ColorSpaceSignature::CmykData {
        return None;
    }
    let transform = Transform::<[u8; 4], [u8; 3]>::new(
        &source,
        PixelFormat::CMYK_8,
        &Profile::new_srgb(),
        PixelFormat::RGB_8,
        Intent::Perceptual,
    )
    .ok()?;
    let mut rgb = vec![[0u8; 3]; ink.len()];
    transform.transform_pixels(ink, &mut rgb);
    Some(rgb)
}

fn naive_cmyk_to_rgb([c, m, y, k]: [u8; 4]) -> [u8; 3] {
    let white = 255 - u32::from(k);
    [c, m, y].map(|ink| (((255 - u32::from(ink)) * white + 127) / 255) as u8)
}

/// Views RGBA bytes as 4-byte pixels without copying.
fn bytemuck_rgba(pixels: &mut [u8]) -> &mut [[u8; 4]] {
    let (chunks, rest) = pixels.as_chunks_mut::<4>();
    debug_assert!(rest.is_empty());
    chunks
}

/// Returns whether the profile's description names sRGB, which makes a conversion a no-op that
/// would only cost time on the large images that cameras tag with sRGB profiles.
fn describes_srgb(profile: &[u8]) -> bool {
    description(profile).is_some_and(|text| text.contains("sRGB"))
}

/// Reads the `desc` tag of an ICC profile: an ASCII `desc` (ICC v2) or the first record of a
/// `mluc` (ICC v4). Returns `None` for a missing or malformed tag.
fn description(profile: &[u8]) -> Option<String> {
    let read_u32 = |offset: usize| -> Option<u32> {
        let bytes = profile.get(offset..offset.checked_add(4)?)?;
        Some(u32::from_be_bytes(bytes.try_into().ok()?))
    };
    let tag_count = read_u32(HEADER_LEN)? as usize;
    for index in 0..tag_count.min(256) {
        let entry = HEADER_LEN + 4 + index * 12;
        if profile.get(entry..entry + 4)? != b"desc" {
            continue;
        }
        let offset = read_u32(entry + 4)? as usize;
        let size = read_u32(entry + 8)? as usize;
        let tag = profile.get(offset..offset.checked_add(size)?)?;
        return match tag.get(..4)? {
            b"desc" => {
                let length = u32::from_be_bytes(tag.get(8..12)?.try_into().ok()?) as usize;
                let text = tag.get(12..12usize.checked_add(length)?)?;
                Some(
                    String::from_utf8_lossy(text)
                        .trim_end_matches('\0')
                        .to_string(),
                )
            }
            b"mluc" => {
                let record_size = u32::from_be_bytes(tag.get(12..16)?.try_into().ok()?) as usize;
                if record_size < 12 {
                    return None;
                }
                let length = u32::from_be_bytes(tag.get(20..24)?.try_into().ok()?) as usize;
                let start = u32::from_be_bytes(tag.get(24..28)?.try_into().ok()?) as usize;
                let text = tag.get(start..start.checked_add(length)?)?;
                let units: Vec<u16> = text
                    .chunks_exact(2)
                    .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                    .collect();
                Some(String::from_utf16_lossy(&units))
            }
            _ => None,
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{decode, DecodeHint};
    use super::*;

    #[test]
    fn reads_descriptions_of_v2_and_v4_profiles() {
        let srgb = Profile::new_srgb().icc().unwrap();
        assert!(describes_srgb(&srgb), "{:?}", description(&srgb));
        assert_eq!(description(b"short"), None);
        assert_eq!(description(&[0u8; 200]), None);
    }

    #[test]
    fn display_p3_reds_clip_to_srgb_red() {
        let decoded = decode(&fixture("icc-display-p3-canary.png"), DecodeHint::default()).unwrap();
        assert!(decoded.icc_converted);
        assert_eq!(decoded.metadata.icc, None);
        for pixel in decoded.frames[0].image.pixels() {
            if pixel.0[3] > 0 {
                assert!(
                    pixel.0[0] >= 253,
                    "red {:?} did not clip to sRGB 255",
                    pixel.0
                );
            }
        }
    }

    #[test]
    fn prophoto_pixel_converts() {
        let decoded = decode(&fixture("icc-prophoto-1x1.png"), DecodeHint::default()).unwrap();
        assert_eq!((decoded.width, decoded.height), (1, 1));
        assert_rgb_near(
            decoded.frames[0].image.get_pixel(0, 0).0,
            [117, 160, 210],
            4,
            "ProPhoto",
        );
    }

    #[test]
    fn broken_profile_is_ignored() {
        let decoded = decode(&fixture("icc-broken-iccp.png"), DecodeHint::default()).unwrap();
        assert_eq!((decoded.width, decoded.height), (248, 248));
        assert!(decoded.has_alpha);
    }

    #[test]
    fn naive_cmyk_matches_the_usual_formula() {
        assert_eq!(naive_cmyk_to_rgb([0, 0, 0, 0]), [255, 255, 255]);
        assert_eq!(naive_cmyk_to_rgb([255, 0, 0, 0]), [0, 255, 255]);
        assert_eq!(naive_cmyk_to_rgb([0, 0, 0, 255]), [0, 0, 0]);
        assert_eq!(naive_cmyk_to_rgb([0, 128, 0, 128]), [127, 63, 127]);
    }
}
