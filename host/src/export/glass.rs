//! The GLASS inference graph in ONNX, written from the trained weights.
//!
//! `input [batch, 3, S, S]` (preprocessed as the run's `PreprocessConfig` says) -> backbone (BatchNorm
//! folded into every conv) -> the two feature maps -> 3x3 neighbourhood aggregation (AveragePool with
//! zero padding counted when a group is one channel's window, else a constant conv that averages the
//! im2col groups) -> stride-16 level upsampled to the stride-8 grid (Resize linear, half_pixel =
//! PyTorch bilinear align_corners=False) -> concat -> projection (1x1 conv) -> discriminator (1x1 conv
//! with BN1d folded, LeakyReLU 0.2, 1x1 conv, Sigmoid) -> `patch_scores [batch, h, w]` and
//! `image_score [batch]` (ReduceMax over the grid: the spec's image score).
//!
//! The map post-processing (bilinear upsample to S x S and Gaussian blur, the run's `blur_sigma`,
//! recorded in the manifest) stays outside the graph: `shared::preprocess::glass_postprocess` does it
//! on host and device alike (one implementation, and it avoids tract's slow full-resolution linear
//! Resize).
use std::collections::HashMap;

use tch::Tensor;

use super::onnx::{fold_bn, Attr, Dim, GraphBuilder};
use crate::models::backbone::efficientnet_lite::{
    self as lite, same_pad, LITE0_BLOCKS, S16_BLOCK, S8_BLOCK,
};
use crate::models::backbone::{wide_resnet, BackboneKind};
use crate::models::glass::Glass;
use crate::{Error, Result};

/// Graph input name.
pub const INPUT: &str = "input";
/// Patch-score grid output `[batch, h, w]`.
pub const PATCH_SCORES: &str = "patch_scores";
/// Image score output `[batch]`.
pub const IMAGE_SCORE: &str = "image_score";

/// Emits nodes from a flat map of named weights (shared by the GLASS and classifier graphs).
pub(super) struct Emitter {
    pub(super) g: GraphBuilder,
    pub(super) vars: HashMap<String, Tensor>,
}

impl Emitter {
    /// An emitter over `vars` (names as the model's VarStore).
    pub(super) fn new(vars: HashMap<String, Tensor>) -> Self {
        Emitter { g: GraphBuilder::new(), vars }
    }

    pub(super) fn var(&self, name: &str) -> Result<&Tensor> {
        self.vars
            .get(name)
            .ok_or_else(|| Error::Config(format!("export: weight `{name}` missing from the model")))
    }

    /// Conv (no bias) + BatchNorm (folded) with ONNX pads `[top, left, bottom, right]`, then an
    /// optional activation: "relu", "relu6" or none.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn conv_bn(
        &mut self,
        x: &str,
        conv: &str,
        bn: &str,
        eps: f64,
        stride: i64,
        pads: [i64; 4],
        group: i64,
        act: Option<&str>,
    ) -> Result<String> {
        let w = self.var(&format!("{conv}.weight"))?;
        let f = fold_bn(
            w,
            None,
            self.var(&format!("{bn}.weight"))?,
            self.var(&format!("{bn}.bias"))?,
            self.var(&format!("{bn}.running_mean"))?,
            self.var(&format!("{bn}.running_var"))?,
            eps,
        );
        let k = f.weight.size();
        let wn = self.g.init_tensor(&format!("{conv}.w"), &f.weight)?;
        let bname = self.g.init_tensor(&format!("{conv}.b"), &f.bias)?;
        let y = self.g.node(
            "Conv",
            &[x, &wn, &bname],
            &[
                ("kernel_shape", Attr::Ints(vec![k[2], k[3]])),
                ("strides", Attr::Ints(vec![stride, stride])),
                ("pads", Attr::Ints(pads.to_vec())),
                ("group", Attr::Int(group)),
                ("dilations", Attr::Ints(vec![1, 1])),
            ],
            None,
        );
        Ok(match act {
            Some("relu") => self.g.node("Relu", &[&y], &[], None),
            Some("relu6") => {
                let lo = self.g.init_f32("zero", &[], &[0.0]);
                let hi = self.g.init_f32("six", &[], &[6.0]);
                self.g.node("Clip", &[&y, &lo, &hi], &[], None)
            }
            _ => y,
        })
    }

    /// 1x1 conv from a linear layer's `weight [out, in]` (+ optional bias).
    fn linear_1x1(
        &mut self,
        x: &str,
        w: &Tensor,
        b: Option<&Tensor>,
        prefix: &str,
    ) -> Result<String> {
        let (o, i) = w.size2()?;
        let wn = self.g.init_tensor(&format!("{prefix}.w"), &w.view([o, i, 1, 1]))?;
        let mut inputs = vec![x.to_string(), wn];
        if let Some(b) = b {
            inputs.push(self.g.init_tensor(&format!("{prefix}.b"), b)?);
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.g.node("Conv", &refs, &[("kernel_shape", Attr::Ints(vec![1, 1]))], None))
    }

    /// EfficientNet-Lite0 trunk to the two taps; tracks the spatial size for TF-SAME pads.
    pub(super) fn lite0(&mut self, x: &str, size: i64) -> Result<(String, String)> {
        let (s8, y, _) = self.lite0_blocks(x, size, S16_BLOCK)?;
        let s8 = s8.ok_or_else(|| Error::Config("lite0: stride-8 tap missing".into()))?;
        Ok((s8, y))
    }

    /// Stem and `_blocks.0..=last`: (the stride-8 tap if reached, the output, its spatial size).
    pub(super) fn lite0_blocks(
        &mut self,
        x: &str,
        size: i64,
        last: usize,
    ) -> Result<(Option<String>, String, i64)> {
        let pads = |h: i64, k: i64, s: i64| {
            let (a, b) = same_pad(h, k, s);
            [a, a, b, b]
        };
        let eps = lite::BN_EPS;
        let mut h = size;
        let mut y =
            self.conv_bn(x, "_conv_stem", "_bn0", eps, 2, pads(h, 3, 2), 1, Some("relu6"))?;
        h = (h + 1) / 2;
        let mut s8 = None;
        for (i, a) in LITE0_BLOCKS[..=last.min(LITE0_BLOCKS.len() - 1)].iter().enumerate() {
            let p = format!("_blocks.{i}");
            let input = y.clone();
            let mid = a.c_in * a.expand_ratio;
            if a.expand_ratio != 1 {
                y = self.conv_bn(
                    &y,
                    &format!("{p}._expand_conv"),
                    &format!("{p}._bn0"),
                    eps,
                    1,
                    [0; 4],
                    1,
                    Some("relu6"),
                )?;
            }
            y = self.conv_bn(
                &y,
                &format!("{p}._depthwise_conv"),
                &format!("{p}._bn1"),
                eps,
                a.stride,
                pads(h, a.kernel, a.stride),
                mid,
                Some("relu6"),
            )?;
            h = (h + a.stride - 1) / a.stride;
            y = self.conv_bn(
                &y,
                &format!("{p}._project_conv"),
                &format!("{p}._bn2"),
                eps,
                1,
                [0; 4],
                1,
                None,
            )?;
            if a.stride == 1 && a.c_in == a.c_out {
                y = self.g.node("Add", &[&y, &input], &[], None);
            }
            if i == S8_BLOCK {
                s8 = Some(y.clone());
            }
        }
        Ok((s8, y, h))
    }

    /// torchvision wide_resnet50_2 to layer2 and layer3.
    pub(super) fn wrn50_2(&mut self, x: &str) -> Result<(String, String)> {
        let eps = wide_resnet::BN_EPS;
        let y = self.conv_bn(x, "conv1", "bn1", eps, 2, [3; 4], 1, Some("relu"))?;
        let mut y = self.g.node(
            "MaxPool",
            &[&y],
            &[
                ("kernel_shape", Attr::Ints(vec![3, 3])),
                ("strides", Attr::Ints(vec![2, 2])),
                ("pads", Attr::Ints(vec![1, 1, 1, 1])),
            ],
            None,
        );
        let mut l2 = None;
        for (layer, blocks, stride) in [("layer1", 3, 1), ("layer2", 4, 2), ("layer3", 6, 2)] {
            for i in 0..blocks {
                let p = format!("{layer}.{i}");
                let s = if i == 0 { stride } else { 1 };
                let input = y.clone();
                let mut z = self.conv_bn(
                    &y,
                    &format!("{p}.conv1"),
                    &format!("{p}.bn1"),
                    eps,
                    1,
                    [0; 4],
                    1,
                    Some("relu"),
                )?;
                z = self.conv_bn(
                    &z,
                    &format!("{p}.conv2"),
                    &format!("{p}.bn2"),
                    eps,
                    s,
                    [1; 4],
                    1,
                    Some("relu"),
                )?;
                z = self.conv_bn(
                    &z,
                    &format!("{p}.conv3"),
                    &format!("{p}.bn3"),
                    eps,
                    1,
                    [0; 4],
                    1,
                    None,
                )?;
                let short = if self.vars.contains_key(&format!("{p}.downsample.0.weight")) {
                    self.conv_bn(
                        &input,
                        &format!("{p}.downsample.0"),
                        &format!("{p}.downsample.1"),
                        eps,
                        s,
                        [0; 4],
                        1,
                        None,
                    )?
                } else {
                    input
                };
                let sum = self.g.node("Add", &[&z, &short], &[], None);
                y = self.g.node("Relu", &[&sum], &[], None);
            }
            if layer == "layer2" {
                l2 = Some(y.clone());
            }
        }
        let l2 = l2.ok_or_else(|| Error::Config("wrn: layer2 tap missing".into()))?;
        Ok((l2, y))
    }

    /// The aggregation of one level: `[B, C, h, w] -> [B, d, h, w]` (see `models::glass::aggregator`).
    pub(super) fn group_mean(&mut self, x: &str, c: i64, d: i64) -> Result<String> {
        let g = c * 9 / d;
        if g == 9 {
            return Ok(self.g.node(
                "AveragePool",
                &[x],
                &[
                    ("kernel_shape", Attr::Ints(vec![3, 3])),
                    ("strides", Attr::Ints(vec![1, 1])),
                    ("pads", Attr::Ints(vec![1, 1, 1, 1])),
                    ("count_include_pad", Attr::Int(1)),
                ],
                None,
            ));
        }
        // Output o averages im2col rows [o*g, (o+1)*g) of the channel-major (c, ky, kx) order.
        let mut w = vec![0f32; (d * c * 9) as usize];
        for o in 0..d {
            for r in o * g..(o + 1) * g {
                w[(o * c * 9 + r) as usize] = 1.0 / g as f32;
            }
        }
        let wn = self.g.init_f32("aggregate.w", &[d, c, 3, 3], &w);
        Ok(self.g.node(
            "Conv",
            &[x, &wn],
            &[("kernel_shape", Attr::Ints(vec![3, 3])), ("pads", Attr::Ints(vec![1, 1, 1, 1]))],
            None,
        ))
    }
}

impl Emitter {
    /// The graph input `[batch, 3, s, s]`, the backbone's two taps, their 3x3 aggregation and the
    /// stride-16 level upsampled to the stride-8 grid (Resize linear, half_pixel), concatenated:
    /// `[batch, d8 + d16, s/8, s/8]`. Shared by the GLASS and PatchCore graphs.
    pub(super) fn patch_features(
        &mut self,
        backbone: BackboneKind,
        embed_dims: [i64; 2],
        s: i64,
        batch: &Dim,
    ) -> Result<String> {
        let x = self.g.input(INPUT, &[batch.clone(), Dim::Fixed(3), Dim::Fixed(s), Dim::Fixed(s)]);
        let (c8, c16, (l8, l16)) = match backbone {
            BackboneKind::EfficientnetLite0 => {
                let (a, b) = crate::models::backbone::EfficientNetLite0::CHANNELS;
                (a, b, self.lite0(&x, s)?)
            }
            BackboneKind::WideResnet50_2 => {
                let (a, b) = crate::models::backbone::WideResNet50_2::CHANNELS;
                (a, b, self.wrn50_2(&x)?)
            }
        };
        let a8 = self.group_mean(&l8, c8, embed_dims[0])?;
        let a16 = self.group_mean(&l16, c16, embed_dims[1])?;
        let roi = self.g.init_f32("roi", &[0], &[]);
        let scales = self.g.init_f32("scales", &[4], &[1.0, 1.0, 2.0, 2.0]);
        let up = self.g.node(
            "Resize",
            &[&a16, &roi, &scales],
            &[
                ("mode", Attr::Str("linear")),
                ("coordinate_transformation_mode", Attr::Str("half_pixel")),
            ],
            None,
        );
        Ok(self.g.node("Concat", &[&a8, &up], &[("axis", Attr::Int(1))], None))
    }
}

impl Emitter {
    /// `image_score` = ReduceMax of the `patch_scores` tensor (already emitted) over the grid, and
    /// both declared as graph outputs: `[batch, grid, grid]` and `[batch]`.
    pub(super) fn score_outputs(&mut self, batch: Dim, grid: i64) {
        self.g.node(
            "ReduceMax",
            &[PATCH_SCORES],
            &[("axes", Attr::Ints(vec![1, 2])), ("keepdims", Attr::Int(0))],
            Some(IMAGE_SCORE),
        );
        self.g.output(PATCH_SCORES, &[batch.clone(), Dim::Fixed(grid), Dim::Fixed(grid)]);
        self.g.output(IMAGE_SCORE, &[batch]);
    }
}

/// Builds the GLASS graph for `glass` at its configured image size.
pub fn build(glass: &Glass) -> Result<tract_onnx::pb::ModelProto> {
    let cfg = &glass.cfg;
    let s = cfg.image_size;
    if s % 16 != 0 {
        return Err(Error::Config(format!(
            "export: image size {s} must be a multiple of 16 (the stride-16 map is upsampled 2x)"
        )));
    }
    let mut vars: HashMap<String, Tensor> = HashMap::new();
    for vs in [&glass.backbone_vs, &glass.proj_vs, &glass.dsc_vs] {
        for (k, v) in vs.variables() {
            vars.insert(k, v.to_device(tch::Device::Cpu).detach());
        }
    }
    let mut e = Emitter::new(vars);
    let batch = Dim::Param("batch");
    let feat = e.patch_features(cfg.backbone, cfg.embed_dims, s, &batch)?;

    // The run's feature scale divides the aggregated features: fold it into the projection weights.
    let pw = e.var("pre_projection.layers.0fc.weight")? / glass.cfg.feature_scale;
    let pb_ = e.var("pre_projection.layers.0fc.bias")?.shallow_clone();
    let proj = e.linear_1x1(&feat, &pw, Some(&pb_), "projection")?;

    let d = "discriminator.body.block1";
    let w1 = e.var(&format!("{d}.0.weight"))?.shallow_clone();
    let (o, i) = w1.size2()?;
    let folded = fold_bn(
        &w1.view([o, i, 1, 1]),
        Some(e.var(&format!("{d}.0.bias"))?),
        e.var(&format!("{d}.1.weight"))?,
        e.var(&format!("{d}.1.bias"))?,
        e.var(&format!("{d}.1.running_mean"))?,
        e.var(&format!("{d}.1.running_var"))?,
        1e-5,
    );
    let h = e.linear_1x1(&proj, &folded.weight.view([o, i]), Some(&folded.bias), "dsc.fc")?;
    let h = e.g.node("LeakyRelu", &[&h], &[("alpha", Attr::Float(0.2))], None);
    let tw = e.var("discriminator.tail.0.weight")?.shallow_clone();
    let logit = e.linear_1x1(&h, &tw, None, "dsc.tail")?;
    let prob = e.g.node("Sigmoid", &[&logit], &[], None);
    let axes = e.g.init_i64("axes", &[1], &[1]);
    e.g.node("Squeeze", &[&prob, &axes], &[], Some(PATCH_SCORES));
    e.score_outputs(batch, s / 8);
    Ok(e.g.finish(
        "glass",
        &format!(
            "GLASS ({}) patch scores at stride 8 and image score (max), input {s}x{s}",
            cfg.backbone.name()
        ),
    ))
}
