//! Post-training static int8 quantization of an exported graph, in ONNX **QOperator** form.
//!
//! Every dense backbone `Conv` (with its following `Relu` / `Clip(0, 6)` fused in) becomes
//! `QuantizeLinear -> QLinearConv -> DequantizeLinear`:
//! - weights: int8, symmetric, **per output channel** scales, one **scalar** zero point 0 (what tract's
//!   QLinearConv kernels take);
//! - activations: uint8, asymmetric, ranges = min/max over `--calib N` training normals, measured by
//!   running the fp32 bundle model in tract ([`runtime::engine::tensor_ranges`]). A fused ReLU / ReLU6
//!   becomes the output range [0, max] (resp. [0, min(max, 6)]): the uint8 saturation is the
//!   activation;
//! - bias: int32 at scale `x_scale * w_scale[c]`, zero point 0.
//!
//! A quantized output that feeds the next conv directly is not dequantized and requantized: the
//! consumer takes the uint8 tensor and its (scale, zero point) as they are. Residual `Add`s, the
//! aggregation, the upsampling and the GLASS head (projection, discriminator, sigmoid) stay fp32: they
//! are a small share of the time and the head decides the score. QDQ form is deliberately not used:
//! tract 0.23 folds QDQ weights back to f32 and runs slower than fp32.
use std::collections::HashMap;

use shared::preprocess::PreprocessConfig;
use tract_onnx::pb;

use super::onnx::{Attr, GraphBuilder};
use crate::data::loader;
use crate::data::split::Item;
use crate::run::GlassRunConfig;
use crate::{Error, Result};

/// Weight-name prefixes (from [`super::glass`]) whose convs stay fp32.
const KEEP_FP32: [&str; 3] = ["projection", "dsc", "aggregate"];

/// A quantized tensor: uint8 name + its scale and zero-point initializer names and values.
#[derive(Clone)]
struct QTensor {
    q: String,
    scale: String,
    zp: String,
}

/// uint8 asymmetric parameters for the range [lo, hi] (always containing 0).
fn u8_params(lo: f32, hi: f32) -> (f32, u8) {
    let lo = lo.min(0.0);
    let hi = hi.max(0.0);
    let scale = ((hi - lo) / 255.0).max(1e-8);
    let zp = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zp)
}

fn attr_ints(n: &pb::NodeProto, name: &str) -> Option<Vec<i64>> {
    n.attribute.iter().find(|a| a.name == name).map(|a| a.ints.clone())
}

fn f32s(t: &pb::TensorProto) -> Result<Vec<f32>> {
    if t.data_type != pb::tensor_proto::DataType::Float as i32 {
        return Err(Error::Config(format!("int8: initializer {} is not f32", t.name)));
    }
    if !t.raw_data.is_empty() {
        Ok(t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    } else {
        Ok(t.float_data.clone())
    }
}

/// Quantizes the fp32 GLASS graph `model`, calibrated on `calib` (training normals).
pub fn quantize_glass(
    model: &pb::ModelProto,
    calib: &[&Item],
    cfg: &GlassRunConfig,
    progress: bool,
) -> Result<pb::ModelProto> {
    quantize(model, calib, &cfg.preprocess, &cfg.category, &KEEP_FP32, progress)
}

/// Quantizes an fp32 graph: every dense `Conv` whose weight name does not start with one of
/// `keep_fp32`, calibrated on `calib` preprocessed as `pp`.
pub fn quantize(
    model: &pb::ModelProto,
    calib: &[&Item],
    pp: &PreprocessConfig,
    tag: &str,
    keep_fp32: &[&str],
    progress: bool,
) -> Result<pb::ModelProto> {
    let graph =
        model.graph.as_ref().ok_or_else(|| Error::Config("int8: model has no graph".into()))?;
    let inits: HashMap<&str, &pb::TensorProto> =
        graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for inp in &n.input {
            consumers.entry(inp.as_str()).or_default().push(i);
        }
    }
    let graph_outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();

    // Plan: which convs to quantize, with their fused activation.
    struct Plan {
        conv: usize,
        act: Option<usize>,
        cap: Option<f32>,
        input: String,
        output: String,
    }
    let mut plans = Vec::new();
    for (i, n) in graph.node.iter().enumerate() {
        if n.op_type != "Conv" || n.input.len() < 2 {
            continue;
        }
        let Some(w) = inits.get(n.input[1].as_str()) else { continue };
        if keep_fp32.iter().any(|p| w.name.starts_with(p)) {
            continue;
        }
        // Grouped (depthwise) convs stay fp32: quantized, tract ran the 160 px model at 927 ms
        // instead of 494 ms, and the verdicts agreed less (92% vs 100% on a synthetic run).
        let group = n.attribute.iter().find(|a| a.name == "group").map(|a| a.i).unwrap_or(1);
        if group > 1 {
            continue;
        }
        let out = n.output[0].as_str();
        let cons = consumers.get(out).cloned().unwrap_or_default();
        let (act, cap) = match cons.as_slice() {
            [j] if graph.node[*j].op_type == "Relu" => (Some(*j), None),
            [j] if graph.node[*j].op_type == "Clip" => (Some(*j), Some(6.0)),
            _ => (None, None),
        };
        let output =
            act.map(|j| graph.node[j].output[0].clone()).unwrap_or_else(|| out.to_string());
        plans.push(Plan { conv: i, act, cap, input: n.input[0].clone(), output });
    }
    if plans.is_empty() {
        return Err(Error::Config("int8: no quantizable convolution in the graph".into()));
    }

    // Calibration: ranges of every conv input and (post-activation) output.
    let mut names: Vec<String> = Vec::new();
    for p in &plans {
        for n in [&p.input, &p.output] {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    let tmp = tempfile_path(tag);
    super::onnx::write_model(model, &tmp)?;
    let (w, h) = (pp.width as usize, pp.height as usize);
    let pb_ = crate::run::progress_bar(calib.len(), "calibrate", progress);
    let mut errs = Vec::new();
    let mut it = calib.iter().filter_map(|item| {
        let r =
            loader::image_tensor(item, pp).and_then(|t| Ok(Vec::<f32>::try_from(t.reshape([-1]))?));
        pb_.inc(1);
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                errs.push(e);
                None
            }
        }
    });
    let ranges = runtime::engine::tensor_ranges(&tmp, [1, 3, h, w], &names, &mut it);
    drop(it);
    pb_.finish_and_clear();
    let _ = std::fs::remove_file(&tmp);
    if let Some(e) = errs.into_iter().next() {
        return Err(e);
    }
    let ranges = ranges.map_err(|e| Error::Config(format!("int8 calibration: {e}")))?;
    let range: HashMap<&str, (f32, f32)> =
        names.iter().map(String::as_str).zip(ranges.iter().copied()).collect();

    // Rewrite.
    let mut b = GraphBuilder::new();
    let mut qmap: HashMap<String, QTensor> = HashMap::new();
    let mut replaced: HashMap<usize, usize> = HashMap::new(); // conv node -> plan
    let mut dropped: Vec<usize> = Vec::new();
    for (k, p) in plans.iter().enumerate() {
        replaced.insert(p.conv, k);
        if let Some(j) = p.act {
            dropped.push(j);
        }
    }
    let mut new_nodes: Vec<pb::NodeProto> = Vec::new();
    for (i, n) in graph.node.iter().enumerate() {
        if dropped.contains(&i) {
            continue;
        }
        let Some(&k) = replaced.get(&i) else {
            new_nodes.push(n.clone());
            continue;
        };
        let p = &plans[k];
        // Input (reuse a quantized producer when there is one).
        let xq = match qmap.get(&p.input) {
            Some(q) => q.clone(),
            None => {
                let (lo, hi) = range[p.input.as_str()];
                let (sc, zp) = u8_params(lo, hi);
                let scale = b.init_f32("int8.x_scale", &[], &[sc]);
                let zpn = b.init_u8("int8.x_zp", &[], &[zp]);
                let q = b.node("QuantizeLinear", &[&p.input, &scale, &zpn], &[], None);
                new_nodes.extend(b.take_nodes());
                QTensor { q, scale, zp: zpn }
            }
        };
        let x_scale = b.value_f32(&xq.scale);
        // Weights: per-channel symmetric int8, scalar zero point.
        let w = inits[n.input[1].as_str()];
        let wv = f32s(w)?;
        let out_c = w.dims[0] as usize;
        let per = wv.len() / out_c;
        let bias: Option<Vec<f32>> = match n.input.get(2).filter(|s| !s.is_empty()) {
            Some(bn) => Some(f32s(inits[bn.as_str()])?),
            None => None,
        };
        let mut wq = vec![0i8; wv.len()];
        let mut wscale = vec![1f32; out_c];
        for c in 0..out_c {
            let row = &wv[c * per..(c + 1) * per];
            let m = row.iter().fold(0f32, |a, v| a.max(v.abs()));
            // The int32 bias (b / (x_scale * w_scale)) must leave the int32 accumulator headroom:
            // keep it within 2^24, coarsening this channel's weight scale if the bias dominates.
            let b_floor =
                bias.as_ref().map(|b| b[c].abs() / (x_scale * (1 << 24) as f32)).unwrap_or(0.0);
            let sc = (m / 127.0).max(b_floor);
            let sc = if sc > 0.0 && sc.is_finite() { sc } else { 1.0 };
            wscale[c] = sc;
            for (j, v) in row.iter().enumerate() {
                wq[c * per + j] = (v / sc).round().clamp(-127.0, 127.0) as i8;
            }
        }
        let wqn = b.init_i8("int8.w", &w.dims, &wq);
        let wsn = b.init_f32("int8.w_scale", &[out_c as i64], &wscale);
        let wzn = b.init_i8("int8.w_zp", &[], &[0]);
        // Output.
        let (mut lo, mut hi) = range[p.output.as_str()];
        if p.act.is_some() {
            lo = 0.0;
            if let Some(cap) = p.cap {
                hi = hi.min(cap);
            }
        }
        let (ysc, yzp) = u8_params(lo, hi);
        let ys = b.init_f32("int8.y_scale", &[], &[ysc]);
        let yz = b.init_u8("int8.y_zp", &[], &[yzp]);
        let mut inputs: Vec<String> = vec![
            xq.q.clone(),
            xq.scale.clone(),
            xq.zp.clone(),
            wqn,
            wsn,
            wzn,
            ys.clone(),
            yz.clone(),
        ];
        if let Some(bv) = &bias {
            let bq: Vec<i32> = bv
                .iter()
                .zip(&wscale)
                .map(|(v, ws)| {
                    (v / (x_scale * ws)).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32
                })
                .collect();
            inputs.push(b.init_i32("int8.b", &[out_c as i64], &bq));
        }
        let attrs: Vec<(&str, Attr)> = ["kernel_shape", "strides", "pads", "dilations"]
            .iter()
            .filter_map(|a| attr_ints(n, a).map(|v| (*a, Attr::Ints(v))))
            .chain(
                n.attribute.iter().filter(|a| a.name == "group").map(|a| ("group", Attr::Int(a.i))),
            )
            .collect();
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let yq = b.node("QLinearConv", &refs, &attrs, None);
        b.node("DequantizeLinear", &[&yq, &ys, &yz], &[], Some(&p.output));
        new_nodes.extend(b.take_nodes());
        qmap.insert(p.output.clone(), QTensor { q: yq, scale: ys, zp: yz });
    }
    // Drop DequantizeLinear nodes nobody reads any more.
    loop {
        let used: std::collections::HashSet<&str> =
            new_nodes.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
        let before = new_nodes.len();
        let keep: Vec<bool> = new_nodes
            .iter()
            .map(|n| {
                n.op_type != "DequantizeLinear"
                    || used.contains(n.output[0].as_str())
                    || graph_outputs.contains(&n.output[0].as_str())
            })
            .collect();
        let mut it = keep.iter();
        new_nodes.retain(|_| *it.next().unwrap_or(&true));
        if new_nodes.len() == before {
            break;
        }
    }
    // Initializers: the fp32 ones still referenced, plus the new ones.
    let used: std::collections::HashSet<String> =
        new_nodes.iter().flat_map(|n| n.input.iter().cloned()).collect();
    let mut initializer: Vec<pb::TensorProto> =
        graph.initializer.iter().filter(|t| used.contains(&t.name)).cloned().collect();
    initializer.extend(b.take_initializers());
    let mut out = model.clone();
    let g = out.graph.as_mut().ok_or_else(|| Error::Config("int8: no graph".into()))?;
    g.node = new_nodes;
    g.initializer = initializer;
    g.name = format!("{}_int8", g.name);
    out.doc_string =
        format!("{} (int8 QOperator, {} convs quantized)", out.doc_string, plans.len());
    Ok(out)
}

fn tempfile_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "glass-edge-calib-{}-{}-{}.onnx",
        tag,
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ))
}
