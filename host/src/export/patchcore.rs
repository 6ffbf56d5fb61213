//! The PatchCore inference graph in ONNX, written from the backbone weights and the memory bank.
//!
//! `input [batch, 3, S, S]` -> the GLASS feature trunk ([`super::glass`]: backbone with BatchNorm
//! folded, 3x3 aggregation, stride-16 level upsampled, concat) -> `feat [batch, d, h, w]`; then, per
//! block of at most [`BANK_CHUNK`] bank entries `m_j`, a 1x1 Conv with weights `-2 m_j` and bias
//! `|m_j|^2` and ReduceMin over the block; Min over blocks; + ReduceSumSquare(feat) over the channels;
//! Relu; Sqrt -> `patch_scores [batch, h, w]` (distance to the nearest bank entry) and `image_score
//! [batch]` (ReduceMax). The same expansion as `models::patchcore::nn_distance`, so libtorch and the
//! station round alike. The bank lives in the Conv initializers (d x M floats).
use std::collections::HashMap;

use tch::{Kind, Tensor};

use super::glass::{Emitter, PATCH_SCORES};
use super::onnx::{Attr, Dim};
use crate::models::patchcore::{PatchCore, BANK_CHUNK};
use crate::{Error, Result};

/// Builds the PatchCore graph for `model` at its configured image size.
pub fn build(model: &PatchCore) -> Result<tract_onnx::pb::ModelProto> {
    let cfg = &model.cfg;
    let s = cfg.image_size;
    if s % 16 != 0 {
        return Err(Error::Config(format!(
            "export: image size {s} must be a multiple of 16 (the stride-16 map is upsampled 2x)"
        )));
    }
    let mut vars: HashMap<String, Tensor> = HashMap::new();
    for (k, v) in model.backbone_vs.variables() {
        vars.insert(k, v.to_device(tch::Device::Cpu).detach());
    }
    let mut e = Emitter::new(vars);
    let batch = Dim::Param("batch");
    let feat = e.patch_features(cfg.backbone, cfg.embed_dims, s, &batch)?;

    let bank = model.bank.to_device(tch::Device::Cpu).to_kind(Kind::Float);
    let (m, d) = bank.size2()?;
    if m == 0 {
        return Err(Error::Config("export: the memory bank is empty".into()));
    }
    let mut partial = Vec::new();
    let mut start = 0;
    while start < m {
        let len = BANK_CHUNK.min(m - start);
        let part = bank.narrow(0, start, len);
        let sq = (&part * &part).sum_dim_intlist(1, false, Kind::Float);
        let w = e.g.init_tensor("bank.w", &(part * -2.0).view([len, d, 1, 1]))?;
        let b = e.g.init_tensor("bank.b", &sq)?;
        let y =
            e.g.node("Conv", &[&feat, &w, &b], &[("kernel_shape", Attr::Ints(vec![1, 1]))], None);
        partial.push(e.g.node(
            "ReduceMin",
            &[&y],
            &[("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(0))],
            None,
        ));
        start += len;
    }
    let best = if partial.len() == 1 {
        partial.remove(0)
    } else {
        let refs: Vec<&str> = partial.iter().map(String::as_str).collect();
        e.g.node("Min", &refs, &[], None)
    };
    let f_sq = e.g.node(
        "ReduceSumSquare",
        &[&feat],
        &[("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(0))],
        None,
    );
    let d2 = e.g.node("Add", &[&best, &f_sq], &[], None);
    let d2 = e.g.node("Relu", &[&d2], &[], None);
    e.g.node("Sqrt", &[&d2], &[], Some(PATCH_SCORES));
    e.score_outputs(batch, s / 8);
    Ok(e.g.finish(
        "patchcore",
        &format!(
            "PatchCore ({}) nearest-neighbour patch distances at stride 8 over a {m}-entry bank and \
             image score (max), input {s}x{s}",
            cfg.backbone.name()
        ),
    ))
}
