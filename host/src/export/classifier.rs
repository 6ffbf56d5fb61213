//! The classifier inference graph in ONNX, written from the trained weights.
//!
//! EfficientNet-Lite0: `input [batch, 3, S, S]` -> stem and `_blocks.0..15` (BatchNorm folded, TF-SAME
//! pads, ReLU6 as `Clip(0, 6)`) -> `_conv_head` + `_bn1` + ReLU6 -> GlobalAveragePool -> Flatten ->
//! `_fc` (Gemm) -> `logits [batch, 2]` and `abnormal_prob [batch]` (Softmax, column 1).
//! TinyViT-21M-512 is not written yet (its attention blocks need LayerNormalization, window
//! partitioning and relative-position biases in the graph): exporting such a run is an error.
use std::collections::HashMap;

use tch::Tensor;

use super::glass::Emitter;
use super::onnx::{Attr, Dim};
use crate::models::backbone::efficientnet_lite::{BN_EPS, LITE0_BLOCKS};
use crate::models::classifier::{Arch, Classifier, ABNORMAL};
use crate::{Error, Result};

/// Graph input name.
pub const INPUT: &str = "input";
/// Logits output `[batch, 2]` (index 1 = abnormal).
pub const LOGITS: &str = "logits";
/// Abnormal probability output `[batch]`.
pub const ABNORMAL_PROB: &str = "abnormal_prob";

/// Builds the classifier graph at `image_size`.
pub fn build(model: &Classifier, image_size: i64) -> Result<tract_onnx::pb::ModelProto> {
    if model.arch != Arch::EfficientnetLite0 {
        return Err(Error::Config(format!(
            "export: {} classifiers cannot be written to ONNX yet (efficientnet_lite0 only)",
            model.arch
        )));
    }
    let s = image_size;
    let vars: HashMap<String, Tensor> = model
        .vs
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.to_device(tch::Device::Cpu).detach()))
        .collect();
    let mut e = Emitter::new(vars);
    let batch = Dim::Param("batch");
    let x = e.g.input(INPUT, &[batch.clone(), Dim::Fixed(3), Dim::Fixed(s), Dim::Fixed(s)]);
    let (_, y, _) = e.lite0_blocks(&x, s, LITE0_BLOCKS.len() - 1)?;
    let y = e.conv_bn(&y, "_conv_head", "_bn1", BN_EPS, 1, [0; 4], 1, Some("relu6"))?;
    let pooled = e.g.node("GlobalAveragePool", &[&y], &[], None);
    let flat = e.g.node("Flatten", &[&pooled], &[("axis", Attr::Int(1))], None);
    let w = e.var("_fc.weight")?.shallow_clone();
    let b = e.var("_fc.bias")?.shallow_clone();
    let wn = e.g.init_tensor("_fc.w", &w)?;
    let bn = e.g.init_tensor("_fc.b", &b)?;
    e.g.node("Gemm", &[&flat, &wn, &bn], &[("transB", Attr::Int(1))], Some(LOGITS));
    let prob = e.g.node("Softmax", &[LOGITS], &[("axis", Attr::Int(1))], None);
    let starts = e.g.init_i64("starts", &[1], &[ABNORMAL]);
    let ends = e.g.init_i64("ends", &[1], &[ABNORMAL + 1]);
    let axes = e.g.init_i64("axes", &[1], &[1]);
    let col = e.g.node("Slice", &[&prob, &starts, &ends, &axes], &[], None);
    e.g.node("Squeeze", &[&col, &axes], &[], Some(ABNORMAL_PROB));
    let (classes, _) = w.size2()?;
    e.g.output(LOGITS, &[batch.clone(), Dim::Fixed(classes)]);
    e.g.output(ABNORMAL_PROB, &[batch]);
    Ok(e.g.finish(
        "classifier",
        &format!("{} classifier: logits and abnormal probability, input {s}x{s}", model.arch),
    ))
}
