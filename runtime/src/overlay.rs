//! Heat-map overlays: a model map blended over the image it came from (host strips, `device inspect
//! --save-maps`, the station's saved frames).

/// A `w x h` map (values mapped from `[lo, hi]` through `shared::preprocess::heat`) blended over
/// `base` (same size) with `alpha`. Host strips and station overlays share it.
pub fn overlay(
    base: &image::RgbImage,
    map: &[f32],
    lo: f32,
    hi: f32,
    alpha: f32,
) -> image::RgbImage {
    let (w, h) = base.dimensions();
    let span = (hi - lo).max(1e-12);
    image::RgbImage::from_fn(w, h, |x, y| {
        let v = map.get((y * w + x) as usize).copied().unwrap_or(f32::NAN);
        let c = shared::preprocess::heat((v - lo) / span);
        let b = base.get_pixel(x, y).0;
        image::Rgb(
            [0, 1, 2].map(|i| (alpha * c[i] as f32 + (1.0 - alpha) * b[i] as f32).round() as u8),
        )
    })
}
