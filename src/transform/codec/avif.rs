//! AVIF encoding of still images through `ravif` (the rav1e AV1 encoder, built without its
//! nasm assembly).

use image::RgbaImage;
use ravif::{Img, RGB8, RGBA8};

use super::{Metadata, OutputFormat, PixelError};

/// rav1e speed from 1 (slowest, smallest) to 10 (fastest). At 8 a 1 MP image encodes in well
/// under a second on one core, and files stay close to what speed 6 gives.
const SPEED: u8 = 8;

/// Encodes one image as an 8-bit AVIF, with an alpha plane only when some pixel needs one.
pub(super) fn encode(
    image: &RgbaImage,
    quality: u8,
    metadata: Option<&Metadata>,
) -> Result<Vec<u8>, PixelError> {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let mut encoder = ravif::Encoder::new()
        .with_quality(f32::from(quality))
        .with_alpha_quality(f32::from(quality))
        .with_speed(SPEED);
    if let Some(exif) = metadata.and_then(|metadata| metadata.exif.clone()) {
        encoder = encoder.with_exif(exif);
    }
    let result = if super::super::ops::has_alpha(image) {
        let pixels: Vec<RGBA8> = image
            .pixels()
            .map(|p| RGBA8::new(p.0[0], p.0[1], p.0[2], p.0[3]))
            .collect();
        encoder.encode_rgba(Img::new(&pixels[..], width, height))
    } else {
        let pixels: Vec<RGB8> = image
            .pixels()
            .map(|p| RGB8::new(p.0[0], p.0[1], p.0[2]))
            .collect();
        encoder.encode_rgb(Img::new(&pixels[..], width, height))
    };
    result
        .map(|encoded| encoded.avif_file)
        .map_err(|error| PixelError::encode(OutputFormat::Avif, error))
}

#[cfg(test)]
mod tests {
    use super::super::{encode as encode_any, EncodeOptions, Frame};
    use super::*;

    #[test]
    fn writes_an_avif_file() {
        let image = RgbaImage::from_fn(64, 48, |x, y| {
            image::Rgba([x as u8 * 4, y as u8 * 5, 90, 255])
        });
        let bytes = encode_any(
            &[Frame::still(image)],
            None,
            OutputFormat::Avif,
            &EncodeOptions::default(),
        )
        .unwrap();
        // An ISO-BMFF `ftyp` box with the `avif` brand.
        assert_eq!(&bytes[4..12], b"ftypavif");
    }

    #[test]
    fn keeps_alpha() {
        let image = RgbaImage::from_fn(32, 32, |x, _| {
            image::Rgba([200, 10, 10, if x < 16 { 0 } else { 255 }])
        });
        let bytes = encode(&image, 80, None).unwrap();
        assert_eq!(&bytes[4..12], b"ftypavif");
        // The alpha plane is a second AV1 item marked with the alpha auxiliary type.
        let marker = b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha";
        assert!(bytes.windows(marker.len()).any(|w| w == marker));
    }
}
