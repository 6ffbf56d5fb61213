//! Grad-CAM (Selvaraju et al., ICCV 2017) and Grad-CAM++ (Chattopadhyay et al., WACV 2018) on the
//! classifier's abnormal logit, as `pytorch-grad-cam` computes them (`docs/tinyvit.md` §4):
//! weights from the gradient of the raw abnormal logit with respect to a layer's activation `A`
//! (`[B,C,h,w]`), `cam = relu(Σ_c w_c·A_c)`, min-max per image, bilinear upsample to the input, min-max
//! again. An all-zero map stays zero.
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::models::classifier::{Classifier, ABNORMAL};
use crate::{Error, Result};

/// Which weighting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CamMethod {
    /// `w_c = mean_hw(∂S/∂A_c)`.
    #[value(name = "gradcam")]
    #[serde(rename = "gradcam")]
    GradCam,
    /// `w_c = Σ_hw relu(G)·α`, `α = G² / (2G² + Σ_hw A·G³ + 1e-6)` (α = 0 where G = 0).
    #[value(name = "gradcam++")]
    #[serde(rename = "gradcam++")]
    GradCamPlusPlus,
}

impl CamMethod {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            CamMethod::GradCam => "gradcam",
            CamMethod::GradCamPlusPlus => "gradcam++",
        }
    }
}

/// Raw class-activation maps `[B,h,w]` (after the ReLU, before normalisation) from an activation and
/// the gradient of the target score with respect to it (both `[B,C,h,w]`).
pub fn raw_cam(act: &Tensor, grad: &Tensor, method: CamMethod) -> Tensor {
    let w = match method {
        CamMethod::GradCam => grad.mean_dim(&[2i64, 3][..], true, Kind::Float),
        CamMethod::GradCamPlusPlus => {
            let g2 = grad.pow_tensor_scalar(2);
            let g3 = grad.pow_tensor_scalar(3);
            let sum_a = act.sum_dim_intlist(&[2i64, 3][..], true, Kind::Float);
            let alpha = &g2 / (&g2 * 2.0 + sum_a * g3 + 1e-6);
            let alpha = alpha.where_self(&grad.ne(0.0), &alpha.zeros_like());
            (grad.relu() * alpha).sum_dim_intlist(&[2i64, 3][..], true, Kind::Float)
        }
    };
    (w * act).sum_dim_intlist(&[1i64][..], false, Kind::Float).relu()
}

/// Per-image min-max to [0, 1] (`x -= min; x /= max + 1e-7`) of `[B,h,w]`.
pub fn min_max(cam: &Tensor) -> Tensor {
    let b = cam.size()[0];
    let flat = cam.reshape([b, -1]);
    let lo = flat.amin(&[1i64][..], true);
    let shifted = flat - lo;
    let hi = shifted.amax(&[1i64][..], true);
    (shifted / (hi + 1e-7)).view(cam.size().as_slice())
}

/// `minmax(upsample_bilinear(minmax(cam)))` to `[B, out_h, out_w]`.
pub fn finish(cam: &Tensor, out_h: i64, out_w: i64) -> Tensor {
    let up = min_max(cam).unsqueeze(1).upsample_bilinear2d([out_h, out_w], false, None, None);
    min_max(&up.squeeze_dim(1))
}

/// Grad-CAM maps `[B,H,W]` in [0,1] of `x` (`[B,3,H,W]`, preprocessed) on `layer`, plus the abnormal
/// probabilities `[B]`. Runs one forward and one backward with gradients on (BN in eval mode).
///
/// # Errors
/// `layer` is not one of the architecture's CAM layers.
pub fn gradcam(
    model: &Classifier,
    x: &Tensor,
    layer: &str,
    method: CamMethod,
) -> Result<(Tensor, Tensor)> {
    if !model.arch.cam_layers().contains(&layer) {
        return Err(Error::Config(format!(
            "--cam-layer {layer:?} is not a layer of {} (choose one of: {})",
            model.arch,
            model.arch.cam_layers().join(", ")
        )));
    }
    gradcam_with(|x| model.forward_cam(x, false, Some(layer)), x, method)
}

/// Grad-CAM of any network: `forward(x)` returns the logits `[B, 2]` and the target activation
/// `[B,C,h,w]` computed from `x`; the target score is the abnormal logit. Returns the maps `[B,H,W]` in
/// [0,1] and the abnormal probabilities `[B]`.
///
/// # Errors
/// The forward produced no activation, or no gradient reaches it.
pub fn gradcam_with(
    forward: impl FnOnce(&Tensor) -> (Tensor, Option<Tensor>),
    x: &Tensor,
    method: CamMethod,
) -> Result<(Tensor, Tensor)> {
    let (h, w) = (x.size()[2], x.size()[3]);
    // The input requires grad so that a graph exists even when the weights are frozen.
    let x = x.detach().set_requires_grad(true);
    let (logits, act) = tch::with_grad(|| forward(&x));
    let act = act.ok_or_else(|| Error::Config("the CAM layer produced no activation".into()))?;
    let score = logits.select(1, ABNORMAL).sum(Kind::Float);
    let grad = Tensor::f_run_backward(&[&score], &[&act], false, false)
        .map_err(|e| Error::Config(format!("no gradient for the CAM layer: {e}")))?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Config("no gradient for the CAM layer".into()))?;
    let cam = tch::no_grad(|| finish(&raw_cam(&act.detach(), &grad, method), h, w));
    let prob = tch::no_grad(|| logits.detach().softmax(-1, Kind::Float).select(1, ABNORMAL));
    Ok((cam, prob))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn min_max_maps_each_image_to_unit_range_and_keeps_zero_maps_zero() {
        let t = Tensor::from_slice(&[1.0f32, 3.0, 5.0, 9.0, 0.0, 0.0, 0.0, 0.0]).view([2, 2, 2]);
        let m = Vec::<f32>::try_from(min_max(&t).reshape([-1])).unwrap();
        assert!((m[0] - 0.0).abs() < 1e-6 && (m[3] - 1.0).abs() < 1e-5);
        assert!((m[1] - 0.25).abs() < 1e-5);
        assert!(m[4..].iter().all(|v| *v == 0.0));
    }

    /// A network whose abnormal logit depends only on red pixels: channel 0 = relu(r − g − b) (red
    /// detector), channel 1 = relu(g − r − b) (green detector, weight 0 in the abnormal logit); logits =
    /// linear(global average). An image with a red square in one place and a green square in another:
    /// the CAM must peak inside the red square, wherever it is, and stay low on the green one.
    #[test]
    fn cam_peaks_on_the_region_the_abnormal_logit_depends_on() {
        let w = Tensor::from_slice(&[1.0f32, -1.0, -1.0, -1.0, 1.0, -1.0]).view([2, 3, 1, 1]);
        let fc = Tensor::from_slice(&[0.0f32, 0.0, 5.0, 0.0]).view([2, 2]); // abnormal = 5·red
        let net = |x: &Tensor| {
            let a = x.conv2d(&w, None::<&Tensor>, [1, 1], [0, 0], [1, 1], 1).relu();
            let pooled = a.mean_dim(&[2i64, 3][..], false, Kind::Float);
            (pooled.matmul(&fc.tr()), Some(a))
        };
        for (red, green) in [((4, 20), (40, 40)), ((36, 8), (6, 38))] {
            let img = Tensor::full([1, 3, 64, 64], 0.2, (Kind::Float, Device::Cpu));
            let _ = img.narrow(2, red.0, 12).narrow(3, red.1, 12).select(1, 0).fill_(1.0);
            let _ = img.narrow(2, green.0, 12).narrow(3, green.1, 12).select(1, 1).fill_(1.0);
            for m in [CamMethod::GradCam, CamMethod::GradCamPlusPlus] {
                let (cam, _) = gradcam_with(net, &img, m).unwrap();
                let cam = cam.get(0);
                let at = |y: i64, x: i64| cam.double_value(&[y, x]);
                let peak = i64::try_from(cam.reshape([-1]).argmax(0, false)).unwrap();
                let (py, px) = (peak / 64, peak % 64);
                assert!(
                    (red.0..red.0 + 12).contains(&py) && (red.1..red.1 + 12).contains(&px),
                    "{m:?}: peak ({py},{px}) outside the red square at {red:?}"
                );
                assert!(
                    at(red.0 + 6, red.1 + 6) > 0.9,
                    "{m:?}: red centre {}",
                    at(red.0 + 6, red.1 + 6)
                );
                assert!(at(green.0 + 6, green.1 + 6) < 0.1, "{m:?}: green centre lit");
            }
        }
    }

    #[test]
    fn gradcam_plus_plus_reduces_to_positive_gradients() {
        // Single channel with a positive constant gradient: both methods give cam ∝ A.
        let a = Tensor::rand([1, 1, 4, 4], (Kind::Float, Device::Cpu));
        let g = Tensor::ones([1, 1, 4, 4], (Kind::Float, Device::Cpu));
        for m in [CamMethod::GradCam, CamMethod::GradCamPlusPlus] {
            let c = min_max(&raw_cam(&a, &g, m));
            let expect = min_max(&a.squeeze_dim(1));
            assert!(f64::try_from((c - expect).abs().max()).unwrap() < 1e-5, "{m:?}");
        }
        // A negative gradient: Grad-CAM's ReLU kills it; Grad-CAM++ has relu(G) = 0 too.
        for m in [CamMethod::GradCam, CamMethod::GradCamPlusPlus] {
            let c = raw_cam(&a, &(-&g), m);
            assert!(f64::try_from(c.abs().max()).unwrap() < 1e-6, "{m:?}");
        }
    }
}
