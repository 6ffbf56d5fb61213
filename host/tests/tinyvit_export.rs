//! TinyViT-21M-512 written to ONNX from Rust: tract and onnxruntime reproduce libtorch's logits and
//! abnormal probability (fixed-seed random weights, BatchNorm statistics, attention biases and head
//! randomised so that nothing is trivially zero), and `onnx.checker` accepts the graph.
mod common;

use anyhow::Context;
use host::export::{self, classifier as xc, onnx};
use host::models::classifier::{Arch, Classifier};
use tch::{Device, Kind, Tensor};
use tract_onnx::prelude::*;

#[test]
fn tinyvit_graph_matches_libtorch_in_tract_and_onnxruntime() -> anyhow::Result<()> {
    tch::manual_seed(3);
    let model = Classifier::new(Arch::TinyVit21m512, Device::Cpu);
    tch::no_grad(|| {
        for (name, mut t) in model.vs.variables() {
            let r = Tensor::randn(t.size(), (Kind::Float, Device::Cpu));
            if name.ends_with("running_var") {
                t.copy_(&(r.abs() * 0.5 + 0.5));
            } else if name.ends_with("running_mean") || name.contains("attention_biases") {
                t.copy_(&(r * 0.2));
            } else if name.starts_with("head.fc") {
                t.copy_(&(r * 0.05));
            }
        }
    });
    let dir = tempfile::tempdir()?;
    let graph = xc::build(&model, 512)?;
    let path = dir.path().join(export::FP32_FILE);
    onnx::write_model(&graph, &path)?;
    let x = Tensor::randn([1, 3, 512, 512], (Kind::Float, Device::Cpu));
    let logits = tch::no_grad(|| model.forward(&x, false));
    let prob = model.abnormal_prob(&x);
    Tensor::write_npz(
        &[("input", &x), (xc::LOGITS, &logits), (xc::ABNORMAL_PROB, &prob)],
        dir.path().join(export::GOLDEN_FILE),
    )?;
    let want: Vec<f32> = Vec::<f32>::try_from(logits.reshape([-1]))?;
    eprintln!("libtorch logits {want:?}");
    assert!(want.iter().any(|v| v.abs() > 1e-3), "degenerate logits {want:?}");

    // The runtime's kernel choices before this process's first tract model (runtime::kernels).
    runtime::kernels::configure();
    let plan = tract_onnx::onnx()
        .model_for_path(&path)?
        .with_input_fact(0, f32::fact([1, 3, 512, 512]).into())?
        .into_optimized()?
        .into_runnable()?;
    let xv: Vec<f32> = Vec::<f32>::try_from(x.reshape([-1]))?;
    let input = tract_ndarray::Array4::from_shape_vec((1, 3, 512, 512), xv)?;
    let out = plan.run(tvec!(Tensor4(input).into_tvalue()))?;
    let got: Vec<f32> = out[0].to_plain_array_view::<f32>()?.iter().copied().collect();
    let p: f32 = *out[1].to_plain_array_view::<f32>()?.iter().next().context("no probability")?;
    let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let dp = (p - prob.double_value(&[0]) as f32).abs();
    eprintln!("tract vs libtorch: logits {d:.2e}, prob {dp:.2e}");
    assert!(d <= 1e-4 && dp <= 1e-4, "tract vs libtorch: logits {d}, prob {dp}");

    let r = common::check_onnx(dir.path(), export::FP32_FILE)?;
    eprintln!("onnxruntime: {r}");
    assert_eq!(r["checker"], "ok");
    for k in [xc::LOGITS, xc::ABNORMAL_PROB] {
        let d = r["max_abs_diff"][k].as_f64().context("missing diff")?;
        assert!(d <= 1e-4, "onnxruntime vs libtorch {k}: {d}");
    }
    Ok(())
}

/// `Tensor4(a).into_tvalue()` without naming tract's tensor type twice.
struct Tensor4(tract_ndarray::Array4<f32>);

impl Tensor4 {
    fn into_tvalue(self) -> TValue {
        tract_onnx::prelude::Tensor::from(self.0).into_tvalue()
    }
}
