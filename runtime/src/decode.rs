//! Image decoding with limits: every frame and file the station or `device inspect` decodes goes
//! through here, so a hostile or broken image (a decompression bomb, a huge or truncated file) is an
//! error naming the limit, never an out-of-memory kill or a panic.
//!
//! The limits are checked before any pixel buffer is allocated: the encoded size first, then the
//! header's width and height, then the decoder's own allocation budget (`image::Limits`).
use std::io::Cursor;
use std::path::Path;

use serde::Deserialize;

/// Upper bounds for one decoded frame. The defaults fit any industrial camera up to 8K (8192 x 8192
/// RGB is 201 MB decoded) while keeping a single frame's memory bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeLimits {
    /// Widest frame accepted, pixels.
    pub max_width: u32,
    /// Tallest frame accepted, pixels.
    pub max_height: u32,
    /// Largest encoded file or camera buffer accepted, bytes.
    pub max_bytes: u64,
    /// The decoder's allocation budget for one frame, bytes (decoded pixels included).
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_width: 8192,
            max_height: 8192,
            max_bytes: 64 << 20,
            max_alloc: 256 << 20,
        }
    }
}

impl DecodeLimits {
    /// Checks a frame size that did not come through a decoder (a raw camera frame).
    pub fn check_size(&self, width: usize, height: usize) -> Result<(), String> {
        if width > self.max_width as usize || height > self.max_height as usize {
            return Err(format!(
                "{width}x{height} exceeds the decode limit of {}x{} (limits.max_width / max_height)",
                self.max_width, self.max_height
            ));
        }
        Ok(())
    }
}

/// Decodes an encoded image (PNG, JPEG, BMP, TIFF, PPM; format guessed from the bytes) to RGB8
/// `(pixels, width, height)` within `limits`.
pub fn decode_bytes(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<(Vec<u8>, usize, usize), String> {
    if bytes.len() as u64 > limits.max_bytes {
        return Err(format!(
            "{} bytes exceeds the decode limit of {} bytes (limits.max_bytes)",
            bytes.len(),
            limits.max_bytes
        ));
    }
    // One pass over the header: the size is checked (with a message naming the limit) before any
    // pixel buffer exists, then the decoder gets the allocation budget too.
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read the image: {e}"))?;
    reader.no_limits();
    let mut decoder = reader.into_decoder().map_err(|e| format!("cannot decode the image: {e}"))?;
    let (w, h) = image::ImageDecoder::dimensions(&decoder);
    limits.check_size(w as usize, h as usize)?;
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_width);
    l.max_image_height = Some(limits.max_height);
    l.max_alloc = Some(limits.max_alloc);
    image::ImageDecoder::set_limits(&mut decoder, l)
        .map_err(|e| format!("cannot decode the image: {e} (limits.max_alloc)"))?;
    let img = image::DynamicImage::from_decoder(decoder)
        .map_err(|e| format!("cannot decode the image: {e}"))?;
    // The RGB8 copy is bounded by the size check above (3 bytes per pixel).
    let rgb = img.into_rgb8();
    let (w, h) = rgb.dimensions();
    Ok((rgb.into_raw(), w as usize, h as usize))
}

/// Reads and decodes an image file within `limits`; errors name the file.
pub fn decode_file_with(
    path: &Path,
    limits: &DecodeLimits,
) -> Result<(Vec<u8>, usize, usize), String> {
    let len = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.len();
    if len > limits.max_bytes {
        return Err(format!(
            "{}: {len} bytes exceeds the decode limit of {} bytes (limits.max_bytes)",
            path.display(),
            limits.max_bytes
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    decode_bytes(&bytes, limits).map_err(|e| format!("{}: {e}", path.display()))
}

/// [`decode_file_with`] the default limits.
pub fn decode_file(path: &Path) -> Result<(Vec<u8>, usize, usize), String> {
    decode_file_with(path, &DecodeLimits::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG whose header claims `w x h`, with an empty IDAT (the pixel data is never reached).
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend(w.to_be_bytes());
        ihdr.extend(h.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        v.extend(13u32.to_be_bytes());
        v.extend(&ihdr);
        v.extend(crc32(&ihdr).to_be_bytes());
        v.extend(0u32.to_be_bytes());
        v.extend(b"IDAT");
        v.extend(crc32(b"IDAT").to_be_bytes());
        v
    }

    /// Every format the station's folder source takes (PNG, JPEG, BMP, TIFF, PPM) decodes to the
    /// image's size.
    #[test]
    fn every_folder_source_format_decodes() {
        let img =
            image::RgbImage::from_fn(24, 16, |x, y| image::Rgb([x as u8 * 10, y as u8 * 10, 90]));
        for fmt in [
            image::ImageFormat::Png,
            image::ImageFormat::Jpeg,
            image::ImageFormat::Bmp,
            image::ImageFormat::Tiff,
            image::ImageFormat::Pnm,
        ] {
            let mut buf = std::io::Cursor::new(Vec::new());
            img.write_to(&mut buf, fmt).unwrap_or_else(|e| panic!("{fmt:?}: {e}"));
            let (rgb, w, h) = decode_bytes(buf.get_ref(), &DecodeLimits::default())
                .unwrap_or_else(|e| panic!("{fmt:?}: {e}"));
            assert_eq!((w, h, rgb.len()), (24, 16, 24 * 16 * 3), "{fmt:?}");
        }
    }

    fn crc32(b: &[u8]) -> u32 {
        let mut c = !0u32;
        for &x in b {
            c ^= u32::from(x);
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }

    #[test]
    fn oversized_header_is_refused_before_any_allocation() {
        let e = decode_bytes(&png_header(12_000, 12_000), &DecodeLimits::default()).unwrap_err();
        assert!(e.contains("12000x12000 exceeds the decode limit"), "{e}");
    }

    #[test]
    fn small_image_decodes_and_byte_cap_applies() {
        let img = image::RgbImage::from_pixel(4, 3, image::Rgb([1, 2, 3]));
        let mut png = Vec::new();
        img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let (rgb, w, h) = decode_bytes(&png, &DecodeLimits::default()).unwrap();
        assert_eq!((w, h, &rgb[..3]), (4, 3, &[1u8, 2, 3][..]));
        let tight = DecodeLimits { max_bytes: 10, ..DecodeLimits::default() };
        assert!(decode_bytes(&png, &tight).unwrap_err().contains("limits.max_bytes"));
        let narrow = DecodeLimits { max_width: 3, ..DecodeLimits::default() };
        assert!(decode_bytes(&png, &narrow).unwrap_err().contains("4x3 exceeds"));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_bytes(b"not an image", &DecodeLimits::default()).is_err());
        assert!(decode_bytes(&png_header(10, 10), &DecodeLimits::default()).is_err());
    }
}
