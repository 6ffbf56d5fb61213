//! The classifier inference graph in ONNX, written from the trained weights.
//!
//! EfficientNet-Lite0: `input [batch, 3, S, S]` -> stem and `_blocks.0..15` (BatchNorm folded, TF-SAME
//! pads, ReLU6 as `Clip(0, 6)`) -> `_conv_head` + `_bn1` + ReLU6 -> GlobalAveragePool -> Flatten ->
//! `_fc` (Gemm) -> `logits [batch, 2]` and `abnormal_prob [batch]` (Softmax, column 1).
//!
//! TinyViT-21M-512 (timm layout, see `models::tinyvit`): ConvNorms with BatchNorm folded and exact GELU as
//! `0.5·x·(1 + erf(x/√2))` (opset 17 has no Gelu), LayerNorm written out (ReduceMean / Sub / Mul / Sqrt),
//! windows partitioned with Reshape + Transpose, per-head q/k/v split, the relative-position bias gathered
//! from `attention_biases` by the `|dy|·ws + |dx|` index, MatMul + Softmax attention, the local 3x3
//! depthwise ConvNorm on the image layout, the MLP; head: mean over H,W -> LayerNorm -> fc. Inputs must
//! be multiples of 512 px so that every stage's map is a whole number of windows (no padding in the
//! graph); other sizes are refused.
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
    let (flat, fc) = match model.arch {
        Arch::EfficientnetLite0 => {
            let (_, y, _) = e.lite0_blocks(&x, s, LITE0_BLOCKS.len() - 1)?;
            let y = e.conv_bn(&y, "_conv_head", "_bn1", BN_EPS, 1, [0; 4], 1, Some("relu6"))?;
            let pooled = e.g.node("GlobalAveragePool", &[&y], &[], None);
            (e.g.node("Flatten", &[&pooled], &[("axis", Attr::Int(1))], None), "_fc")
        }
        Arch::TinyVit21m512 => (tinyvit(&mut e, &x, s)?, "head.fc"),
    };
    let w = e.var(&format!("{fc}.weight"))?.shallow_clone();
    let b = e.var(&format!("{fc}.bias"))?.shallow_clone();
    let wn = e.g.init_tensor(&format!("{fc}.w"), &w)?;
    let bn = e.g.init_tensor(&format!("{fc}.b"), &b)?;
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

/// Exact GELU: `0.5 · x · (1 + erf(x / √2))`.
fn gelu(e: &mut Emitter, x: &str) -> String {
    let r2 = e.g.init_f32("sqrt2", &[], &[std::f32::consts::SQRT_2]);
    let one = e.g.init_f32("one", &[], &[1.0]);
    let half = e.g.init_f32("half", &[], &[0.5]);
    let d = e.g.node("Div", &[x, &r2], &[], None);
    let erf = e.g.node("Erf", &[&d], &[], None);
    let p = e.g.node("Add", &[&erf, &one], &[], None);
    let m = e.g.node("Mul", &[x, &p], &[], None);
    e.g.node("Mul", &[&m, &half], &[], None)
}

/// timm `ConvNorm` (`{p}.conv`, `{p}.bn`), "same" padding, BatchNorm folded, optional GELU.
fn conv_norm(
    e: &mut Emitter,
    x: &str,
    p: &str,
    k: i64,
    stride: i64,
    groups: i64,
    act: bool,
) -> Result<String> {
    let pad = (k - 1) / 2;
    let conv = format!("{p}.conv");
    let bn = format!("{p}.bn");
    let y = e.conv_bn(x, &conv, &bn, TINYVIT_BN_EPS, stride, [pad; 4], groups, None)?;
    Ok(if act { gelu(e, &y) } else { y })
}

const TINYVIT_BN_EPS: f64 = 1e-5;
const TINYVIT_LN_EPS: f32 = 1e-5;

/// LayerNorm over the last axis, written out.
fn layer_norm(e: &mut Emitter, x: &str, p: &str) -> Result<String> {
    let axes = [("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))];
    let mean = e.g.node("ReduceMean", &[x], &axes, None);
    let d = e.g.node("Sub", &[x, &mean], &[], None);
    let sq = e.g.node("Mul", &[&d, &d], &[], None);
    let var = e.g.node("ReduceMean", &[&sq], &axes, None);
    let eps = e.g.init_f32("ln_eps", &[], &[TINYVIT_LN_EPS]);
    let ve = e.g.node("Add", &[&var, &eps], &[], None);
    let sd = e.g.node("Sqrt", &[&ve], &[], None);
    let n = e.g.node("Div", &[&d, &sd], &[], None);
    let gw = e.var(&format!("{p}.weight"))?.shallow_clone();
    let gb = e.var(&format!("{p}.bias"))?.shallow_clone();
    let g = e.g.init_tensor(&format!("{p}.g"), &gw)?;
    let b = e.g.init_tensor(&format!("{p}.b"), &gb)?;
    let y = e.g.node("Mul", &[&n, &g], &[], None);
    Ok(e.g.node("Add", &[&y, &b], &[], None))
}

/// `x @ Wᵀ + b` for a `[.., in]` tensor (`{p}.weight [out, in]`, `{p}.bias`).
fn linear(e: &mut Emitter, x: &str, p: &str) -> Result<String> {
    let w = e.var(&format!("{p}.weight"))?.tr().contiguous();
    let b = e.var(&format!("{p}.bias"))?.shallow_clone();
    let wn = e.g.init_tensor(&format!("{p}.wt"), &w)?;
    let bn = e.g.init_tensor(&format!("{p}.b"), &b)?;
    let y = e.g.node("MatMul", &[x, &wn], &[], None);
    Ok(e.g.node("Add", &[&y, &bn], &[], None))
}

fn reshape(e: &mut Emitter, x: &str, shape: &[i64]) -> String {
    let s = e.g.init_i64("shape", &[shape.len() as i64], shape);
    e.g.node("Reshape", &[x, &s], &[], None)
}

fn transpose(e: &mut Emitter, x: &str, perm: &[i64]) -> String {
    e.g.node("Transpose", &[x], &[("perm", Attr::Ints(perm.to_vec()))], None)
}

/// TinyViT-21M-512 up to the pooled, normalised features `[batch, 576]`.
fn tinyvit(e: &mut Emitter, x: &str, size: i64) -> Result<String> {
    use crate::models::tinyvit::{
        attention_bias_index, DEPTHS, EMBED_DIMS, NUM_HEADS, WINDOW_SIZES,
    };
    const HEAD_DIM: i64 = 32;
    if size % 512 != 0 {
        return Err(Error::Config(format!(
            "export: TinyViT-21M-512 graphs need an input that is a multiple of 512 px (every stage a \
             whole number of attention windows); this run uses {size}"
        )));
    }
    let y = conv_norm(e, x, "patch_embed.conv1", 3, 2, 1, true)?;
    let mut y = conv_norm(e, &y, "patch_embed.conv2", 3, 2, 1, false)?;
    let mut res = size / 4;
    let mut idx_cache: HashMap<i64, String> = HashMap::new();
    for st in 0..4 {
        let dim = EMBED_DIMS[st];
        if st > 0 {
            let p = format!("stages.{st}.downsample");
            let a = conv_norm(e, &y, &format!("{p}.conv1"), 1, 1, 1, true)?;
            let a = conv_norm(e, &a, &format!("{p}.conv2"), 3, 2, dim, true)?;
            y = conv_norm(e, &a, &format!("{p}.conv3"), 1, 1, 1, false)?;
            res /= 2;
        }
        if st == 0 {
            for bi in 0..DEPTHS[0] {
                let p = format!("stages.0.blocks.{bi}");
                let a = conv_norm(e, &y, &format!("{p}.conv1"), 1, 1, 1, true)?;
                let a = conv_norm(e, &a, &format!("{p}.conv2"), 3, 1, dim * 4, true)?;
                let a = conv_norm(e, &a, &format!("{p}.conv3"), 1, 1, 1, false)?;
                let sum = e.g.node("Add", &[&a, &y], &[], None);
                y = gelu(e, &sum);
            }
            continue;
        }
        let (heads, ws) = (NUM_HEADS[st], WINDOW_SIZES[st]);
        let n = ws * ws;
        let nwin = res / ws;
        let mut t = transpose(e, &y, &[0, 2, 3, 1]); // [B, H, W, C]
        for bi in 0..DEPTHS[st] {
            let p = format!("stages.{st}.blocks.{bi}");
            // Windows [B·nW, N, C].
            let win = if nwin == 1 {
                reshape(e, &t, &[-1, n, dim])
            } else {
                let a = reshape(e, &t, &[-1, nwin, ws, nwin, ws, dim]);
                let a = transpose(e, &a, &[0, 1, 3, 2, 4, 5]);
                reshape(e, &a, &[-1, n, dim])
            };
            // Attention.
            let ap = format!("{p}.attn");
            let h = layer_norm(e, &win, &format!("{ap}.norm"))?;
            let qkv = linear(e, &h, &format!("{ap}.qkv"))?;
            let qkv = reshape(e, &qkv, &[-1, n, heads, 3 * HEAD_DIM]);
            let split = e.g.init_i64("split", &[3], &[HEAD_DIM; 3]);
            let (q, k, v) = (e.g.fresh("q"), e.g.fresh("k"), e.g.fresh("v"));
            e.g.node_multi("Split", &[&qkv, &split], &[("axis", Attr::Int(-1))], &[&q, &k, &v]);
            let q = transpose(e, &q, &[0, 2, 1, 3]); // [B', h, N, d]
            let kt = transpose(e, &k, &[0, 2, 3, 1]); // [B', h, d, N]
            let v = transpose(e, &v, &[0, 2, 1, 3]);
            let scores = e.g.node("MatMul", &[&q, &kt], &[], None);
            let scale = e.g.init_f32("scale", &[], &[(HEAD_DIM as f32).powf(-0.5)]);
            let scores = e.g.node("Mul", &[&scores, &scale], &[], None);
            let biases = e.var(&format!("{ap}.attention_biases"))?.shallow_clone();
            let bn = e.g.init_tensor(&format!("{ap}.biases"), &biases)?;
            let idx = match idx_cache.get(&ws) {
                Some(i) => i.clone(),
                None => {
                    let i = e.g.init_i64("bias_idx", &[n * n], &attention_bias_index(ws));
                    idx_cache.insert(ws, i.clone());
                    i
                }
            };
            let bias = e.g.node("Gather", &[&bn, &idx], &[("axis", Attr::Int(1))], None);
            let bias = reshape(e, &bias, &[heads, n, n]);
            let scores = e.g.node("Add", &[&scores, &bias], &[], None);
            let attn = e.g.node("Softmax", &[&scores], &[("axis", Attr::Int(-1))], None);
            let o = e.g.node("MatMul", &[&attn, &v], &[], None);
            let o = transpose(e, &o, &[0, 2, 1, 3]);
            let o = reshape(e, &o, &[-1, n, dim]);
            let o = linear(e, &o, &format!("{ap}.proj"))?;
            // Back to [B, H, W, C].
            let o = if nwin == 1 {
                reshape(e, &o, &[-1, res, res, dim])
            } else {
                let a = reshape(e, &o, &[-1, nwin, nwin, ws, ws, dim]);
                let a = transpose(e, &a, &[0, 1, 3, 2, 4, 5]);
                reshape(e, &a, &[-1, res, res, dim])
            };
            let x1 = e.g.node("Add", &[&t, &o], &[], None);
            // Local depthwise conv on the image layout (no residual, no activation).
            let img = transpose(e, &x1, &[0, 3, 1, 2]);
            let lc = conv_norm(e, &img, &format!("{p}.local_conv"), 3, 1, dim, false)?;
            let x2 = transpose(e, &lc, &[0, 2, 3, 1]);
            // MLP.
            let m = layer_norm(e, &x2, &format!("{p}.mlp.norm"))?;
            let m = linear(e, &m, &format!("{p}.mlp.fc1"))?;
            let m = gelu(e, &m);
            let m = linear(e, &m, &format!("{p}.mlp.fc2"))?;
            t = e.g.node("Add", &[&x2, &m], &[], None);
        }
        y = transpose(e, &t, &[0, 3, 1, 2]);
    }
    let pooled = e.g.node(
        "ReduceMean",
        &[&y],
        &[("axes", Attr::Ints(vec![2, 3])), ("keepdims", Attr::Int(0))],
        None,
    );
    layer_norm(e, &pooled, "head.norm")
}
