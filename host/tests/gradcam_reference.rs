//! Grad-CAM and Grad-CAM++ against the `grad-cam` Python package (pytorch-grad-cam), the reference
//! docs/tinyvit.md §4 follows: the same small network with seeded random weights, the same non-square
//! inputs, the abnormal logit as target; our maps (`eval::cam::gradcam_with`) must equal the package's
//! within 1e-4 (both are float32; the package resizes with OpenCV's bilinear, we with libtorch's).
mod common;

use anyhow::{Context, Result};
use host::eval::cam::{gradcam_with, CamMethod};
use tch::{Kind, Tensor};

#[test]
fn cam_maps_match_the_grad_cam_package() -> Result<()> {
    host::run::set_threads(1);
    let dir = common::generate(
        "make_gradcam_reference.py",
        "gradcam",
        "the grad-cam, torch and safetensors packages are needed (bash scripts/setup installs them)",
    )?;
    let t = common::read(&dir.join("gradcam.safetensors"))?;
    let get = |k: &str| t.get(k).with_context(|| format!("fixture has no {k}"));
    let (w1, b1, w2, b2) =
        (get("conv1.weight")?, get("conv1.bias")?, get("conv2.weight")?, get("conv2.bias")?);
    let (wf, bf) = (get("fc.weight")?, get("fc.bias")?);
    let x = get("input")?;
    let net = |x: &Tensor| {
        let a1 = x.conv2d(w1, Some(b1), [1, 1], [1, 1], [1, 1], 1).relu();
        let a2 = a1.conv2d(w2, Some(b2), [2, 2], [1, 1], [1, 1], 1).relu();
        let logits = a2.mean_dim(&[2i64, 3][..], false, Kind::Float).linear(wf, Some(bf));
        (logits, Some(a2))
    };
    // The network itself agrees before the maps are compared.
    let (logits, _) = tch::no_grad(|| net(x));
    let dl = (&logits - get("logits")?).abs().max().double_value(&[]);
    assert!(dl < 1e-5, "logits differ from the fixture's by {dl:.2e}");
    for (method, key) in
        [(CamMethod::GradCam, "gradcam"), (CamMethod::GradCamPlusPlus, "gradcampp")]
    {
        let (ours, _) = gradcam_with(net, x, method)?;
        let want = get(key)?;
        assert_eq!(ours.size(), want.size(), "{key}: shape");
        let d = (&ours - want).abs().max().double_value(&[]);
        let spread = want.std(true).double_value(&[]);
        eprintln!("{key}: max |ours - grad-cam| {d:.2e} (map std {spread:.3})");
        assert!(
            spread > 0.05,
            "{key}: the reference maps are flat; the comparison would prove nothing"
        );
        assert!(d <= 1e-4, "{key}: our map differs from grad-cam's by {d:.2e}");
    }
    Ok(())
}
