//! Camera frame conversion on synthesised frames (device/tests/frames, written by make_frames.py; not
//! recorded from a camera): YUYV through the BT.601 limited-range integer decoder matches the
//! floating-point reference within 1 level;
//! an MJPG frame decodes to what libjpeg gives within a few levels (different IDCT / chroma upsampling);
//! RGB3 rows are unpadded; short frames are errors, not panics.
use std::path::Path;

use device::station::frame::{to_rgb, PixelFormat};

fn read(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/frames").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
}

#[test]
fn yuyv_matches_the_bt601_reference() {
    let (rgb, w, h) = to_rgb(PixelFormat::Yuyv, &read("bars_16x8.yuyv"), 16, 8, 32).unwrap();
    assert_eq!((w, h), (16, 8));
    let d = max_diff(&rgb, &read("bars_16x8.yuyv.rgb"));
    assert!(d <= 1, "YUYV differs from the reference by {d}");
    // A padded stride: the same pixels.
    let src = read("bars_16x8.yuyv");
    let mut padded = Vec::new();
    for row in src.chunks(32) {
        padded.extend_from_slice(row);
        padded.extend_from_slice(&[0xAA; 8]);
    }
    let (rgb2, _, _) = to_rgb(PixelFormat::Yuyv, &padded, 16, 8, 40).unwrap();
    assert_eq!(rgb, rgb2);
    assert!(to_rgb(PixelFormat::Yuyv, &src[..100], 16, 8, 32).is_err());
}

#[test]
fn mjpg_matches_libjpeg() {
    let (rgb, w, h) = to_rgb(PixelFormat::Mjpg, &read("bars_32x16.mjpg"), 0, 0, 0).unwrap();
    assert_eq!((w, h), (32, 16));
    let d = max_diff(&rgb, &read("bars_32x16.mjpg.rgb"));
    assert!(d <= 8, "MJPG differs from libjpeg by {d}");
    assert!(to_rgb(PixelFormat::Mjpg, &read("bars_32x16.mjpg")[..200], 0, 0, 0).is_err());
}

#[test]
fn rgb3_drops_row_padding() {
    let src: Vec<u8> = (0..2 * 8).map(|i| i as u8).collect(); // 2 rows of 2 px + 2 padding bytes
    let (rgb, _, _) = to_rgb(PixelFormat::Rgb3, &src, 2, 2, 8).unwrap();
    assert_eq!(rgb, vec![0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]);
}
