//! Time per op of the optimised tract plan (`device bench --profile`): every node of the plan is
//! evaluated through a timing wrapper around tract's own `eval`, on one preprocessed input, over a few
//! runs after a warm-up; the report gives each node's median and the totals per op kind, so anyone can
//! see where a model spends its time (`docs/performance.md`).
use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{eval, SimpleState};

use crate::engine::{Engine, EngineError};

/// One node of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct NodeTime {
    /// Node id in the optimised plan.
    pub id: usize,
    /// Node name (from the ONNX graph, with tract's suffixes).
    pub name: String,
    /// Op kind (tract's op name, e.g. `Conv`, `OptMatMulPack`).
    pub op: String,
    /// Median time per run, milliseconds.
    pub ms: f64,
}

/// Totals per op kind.
#[derive(Debug, Clone, Serialize)]
pub struct KindTime {
    /// Op kind.
    pub op: String,
    /// Nodes of that kind.
    pub nodes: usize,
    /// Sum of their medians, milliseconds.
    pub ms: f64,
    /// Share of the plan's total.
    pub share: f64,
}

/// A profile of one plan.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// Timed runs (after one warm-up).
    pub runs: usize,
    /// Sum of all node medians, milliseconds.
    pub total_ms: f64,
    /// Per op kind, slowest first.
    pub kinds: Vec<KindTime>,
    /// Per node, slowest first.
    pub nodes: Vec<NodeTime>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

impl Engine {
    /// Profiles the plan on a mid-grey input (the timing of these ops does not depend on pixel
    /// values) over `runs` runs after one warm-up.
    ///
    /// # Errors
    /// The plan fails to run.
    pub fn profile(&self, runs: usize) -> Result<Profile, EngineError> {
        let (w, h) = self.input_size();
        let shape = [1usize, 3, h, w];
        let input = Tensor::zero::<f32>(&shape).map_err(|e| EngineError::Run(format!("{e:#}")))?;
        let plan = self.plan.clone();
        let n = plan.model().nodes().len();
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut state = SimpleState::new(&plan).map_err(|e| EngineError::Run(format!("{e:#}")))?;
        for run in 0..=runs.max(1) {
            let mut times = vec![0f64; n];
            state
                .run_plan_with_eval(tvec!(input.clone().into()), |ctx, st, node, inputs| {
                    let t = Instant::now();
                    let r = eval(ctx, st, node, inputs);
                    times[node.id] += t.elapsed().as_secs_f64() * 1e3;
                    r
                })
                .map_err(|e| EngineError::Run(format!("{e:#}")))?;
            if run > 0 {
                for (s, t) in samples.iter_mut().zip(times) {
                    s.push(t);
                }
            }
        }
        let model = plan.model();
        let mut nodes: Vec<NodeTime> = model
            .nodes()
            .iter()
            .zip(samples.iter_mut())
            .map(|(node, s)| NodeTime {
                id: node.id,
                name: node.name.clone(),
                op: node.op().name().to_string(),
                ms: median(s),
            })
            .collect();
        nodes.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        let total_ms: f64 = nodes.iter().map(|n| n.ms).sum();
        let mut by_kind: BTreeMap<String, (usize, f64)> = BTreeMap::new();
        for nd in &nodes {
            let e = by_kind.entry(nd.op.clone()).or_default();
            e.0 += 1;
            e.1 += nd.ms;
        }
        let mut kinds: Vec<KindTime> = by_kind
            .into_iter()
            .map(|(op, (nodes, ms))| KindTime {
                op,
                nodes,
                ms,
                share: if total_ms > 0.0 { ms / total_ms } else { 0.0 },
            })
            .collect();
        kinds.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        Ok(Profile { runs: runs.max(1), total_ms, kinds, nodes })
    }
}
