//! The official spectral judge that picks manifold vs hypersphere per category (docs/glass.md §4,
//! `utils.distribution_judge`): mean training image -> 289², gray, 39x39 box blur, |FFT| shifted,
//! 20·ln|F| > 170 binarised, then densities of the on-pixels around the centre.
//! Hypersphere iff (l1_density > 0.21 or l2_density > 0.21) and R > 12 and n > 60.
use tch::{Kind, Tensor};

use super::Distribution;

/// The judge's measurements, written into the run's config for the record.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Judgement {
    /// On-pixels of the binarised spectrum.
    pub n: i64,
    /// Largest distance of an on-pixel from the centre.
    pub radius: f64,
    /// n / (4 · sx · sy).
    pub l1_density: f64,
    /// n / pixels within `radius`.
    pub l2_density: f64,
    /// The verdict.
    pub distribution: Distribution,
}

/// Judges from the mean training image `[3, H, W]` with values in 0..255 (RGB).
pub fn judge(mean_rgb_255: &Tensor) -> Judgement {
    let s = 289i64;
    let img = mean_rgb_255.to_kind(Kind::Float).unsqueeze(0);
    let img = img.upsample_bilinear2d([s, s], false, None, None).squeeze_dim(0);
    // OpenCV BGR2GRAY weights on RGB channels; cv2 works on uint8, so round.
    let gray =
        (img.get(0) * 0.299 + img.get(1) * 0.587 + img.get(2) * 0.114).round().clamp(0.0, 255.0);
    // cv2.blur 39x39 with BORDER_REFLECT_101 (= torch reflection padding), then back to uint8.
    let padded = gray.view([1, 1, s, s]).reflection_pad2d([19, 19, 19, 19]);
    let blurred =
        padded.avg_pool2d([39, 39], [1, 1], [0, 0], false, true, None::<i64>).view([s, s]).round();
    let f = blurred.to_kind(Kind::ComplexFloat).fft_fft2(None::<&[i64]>, [0, 1], "backward");
    let mag = f.fft_fftshift(None::<&[i64]>).abs().log() * 20.0;
    let on = mag.gt(170.0);
    let idx = on.nonzero(); // [n, 2] (y, x)
    let n = idx.size()[0];
    let c = (s / 2) as f64; // 144
    let (mut sx, mut sy, mut r) = (0f64, 0f64, 0f64);
    if n > 0 {
        let ys = (idx.select(1, 0).to_kind(Kind::Double) - c).abs();
        let xs = (idx.select(1, 1).to_kind(Kind::Double) - c).abs();
        sy = ys.max().double_value(&[]);
        sx = xs.max().double_value(&[]);
        r = (&ys * &ys + &xs * &xs).sqrt().max().double_value(&[]);
    }
    let l1_density = n as f64 / (4.0 * sx.max(1.0) * sy.max(1.0));
    let yy = Tensor::arange(s, (Kind::Double, tch::Device::Cpu)) - c;
    let d2 = yy.view([s, 1]).square() + yy.view([1, s]).square();
    let within = d2.le(r * r).sum(Kind::Int64).int64_value(&[]).max(1);
    let l2_density = n as f64 / within as f64;
    let hyper = (l1_density > 0.21 || l2_density > 0.21) && r > 12.0 && n > 60;
    Judgement {
        n,
        radius: r,
        l1_density,
        l2_density,
        distribution: if hyper { Distribution::Hypersphere } else { Distribution::Manifold },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_image_is_a_manifold_and_object_on_background_is_judged() {
        // A flat image has a single DC peak: n tiny -> manifold.
        let flat = Tensor::full([3, 64, 64], 128.0, (Kind::Float, tch::Device::Cpu));
        assert_eq!(judge(&flat).distribution, Distribution::Manifold);
        // A bright disk on black (an aligned object): a broad low-frequency blob -> hypersphere.
        let s = 128i64;
        let yy = Tensor::arange(s, (Kind::Float, tch::Device::Cpu)) - 64.0;
        let d2 = yy.view([s, 1]).square() + yy.view([1, s]).square();
        let disk = d2.le(40.0 * 40.0).to_kind(Kind::Float) * 255.0;
        let img = disk.unsqueeze(0).repeat([3, 1, 1]);
        let j = judge(&img);
        assert_eq!(j.distribution, Distribution::Hypersphere, "{j:?}");
    }
}
