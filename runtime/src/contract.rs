//! What a bundle must satisfy before the engine runs it: files read once within a size limit and
//! hashed as read, and the ONNX graph's input and outputs checked against the manifest (README.md,
//! "Loading a bundle").
use std::path::Path;

use shared::manifest::{self, Manifest};
use tract_onnx::prelude::*;

use crate::error::EngineError;

/// Largest `manifest.json` a bundle may have.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// Largest model file (a PatchCore bank at its 64 MB station default fits with room).
pub(crate) const MAX_MODEL_BYTES: u64 = 1 << 30;
/// Largest `golden.npz`.
pub(crate) const MAX_GOLDEN_BYTES: u64 = 256 << 20;

/// Reads a whole file of at most `limit` bytes.
pub(crate) fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, EngineError> {
    use std::io::Read;
    let io = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::NotFound {
            manifest::Error::MissingFile { path: path.to_path_buf() }
        } else {
            manifest::Error::Io { path: path.to_path_buf(), source }
        }
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    f.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(EngineError::Contract {
            path: path.to_path_buf(),
            msg: format!("larger than {limit} bytes"),
        });
    }
    Ok(bytes)
}

/// Reads a bundle file once and checks the bytes read against the manifest's sha256.
pub(crate) fn read_verified(
    dir: &Path,
    file: &manifest::FileRef,
    limit: u64,
) -> Result<Vec<u8>, EngineError> {
    let path = dir.join(&file.path);
    let bytes = read_limited(&path, limit)?;
    let actual = manifest::sha256_bytes(&bytes);
    if actual != file.sha256 {
        return Err(
            manifest::Error::ShaMismatch { path, expected: file.sha256.clone(), actual }.into()
        );
    }
    Ok(bytes)
}

/// The graph's output names against the manifest's `outputs` (when it lists them): same count, same
/// names, same order.
pub(crate) fn check_output_names(
    proto: &tract_onnx::pb::ModelProto,
    manifest: &Manifest,
) -> Result<(), String> {
    let graph = proto.graph.as_ref().ok_or("the file has no graph")?;
    let names: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let want: Vec<&str> = manifest.outputs.iter().map(|o| o.name.as_str()).collect();
    if !want.is_empty() && names != want {
        return Err(format!(
            "the graph's outputs are {names:?}, manifest.json `outputs` lists {want:?}"
        ));
    }
    Ok(())
}

/// The optimised graph's outputs for the pinned input: two of them; for a map model `[1, h, w]` patch
/// scores and one image score, for a classifier `[1, classes]` logits and one probability; each
/// concrete dimension equal to the manifest's where it gives one (`-1` matches anything).
pub(crate) fn check_output_shapes(model: &TypedModel, manifest: &Manifest) -> Result<(), String> {
    let outlets = model.output_outlets().map_err(|e| format!("{e:#}"))?;
    let kind = manifest.model_kind;
    if outlets.len() != 2 {
        return Err(format!("the graph has {} outputs, a {kind:?} bundle needs 2", outlets.len()));
    }
    let mut shapes = Vec::with_capacity(2);
    for (i, outlet) in outlets.iter().enumerate() {
        let fact = model.outlet_fact(*outlet).map_err(|e| format!("{e:#}"))?;
        let dims = fact
            .shape
            .as_concrete()
            .ok_or_else(|| format!("output {i} has a symbolic shape {:?}", fact.shape))?
            .to_vec();
        if let Some(spec) = manifest.outputs.get(i) {
            let fits = spec.shape.len() == dims.len()
                && spec.shape.iter().zip(&dims).all(|(w, d)| *w == -1 || *w == *d as i64);
            if !spec.shape.is_empty() && !fits {
                return Err(format!(
                    "output `{}` has shape {dims:?}, manifest.json says {:?}",
                    spec.name, spec.shape
                ));
            }
        }
        shapes.push(dims);
    }
    let (main, score) = (&shapes[0], &shapes[1]);
    let rank = if kind.has_map() { 3 } else { 2 };
    if main.len() != rank || main[0] != 1 || main.contains(&0) {
        let what = if kind.has_map() { "[1, h, w] patch scores" } else { "[1, classes] logits" };
        return Err(format!("output 0 has shape {main:?}, a {kind:?} bundle needs {what}"));
    }
    if !kind.has_map() && !manifest.classes.is_empty() && main[1] != manifest.classes.len() {
        return Err(format!(
            "output 0 has {} classes, manifest.json `classes` lists {}",
            main[1],
            manifest.classes.len()
        ));
    }
    if score.iter().product::<usize>() != 1 {
        return Err(format!("output 1 has shape {score:?}, expected one score for one image"));
    }
    Ok(())
}

/// Checks the graph's declared input `[batch, C, H, W]` against `shape` (symbolic dims match anything).
pub(crate) fn check_input_shape(
    proto: &tract_onnx::pb::ModelProto,
    shape: &[usize; 4],
) -> Result<(), String> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value;
    use tract_onnx::pb::type_proto::Value as TV;
    let graph = proto.graph.as_ref().ok_or("the file has no graph")?;
    let init: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let input = graph
        .input
        .iter()
        .find(|i| !init.contains(i.name.as_str()))
        .ok_or("the graph has no input")?;
    let Some(TV::TensorType(t)) = input.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(format!("graph input `{}` is not a tensor", input.name));
    };
    let Some(sh) = &t.shape else { return Ok(()) };
    if sh.dim.len() != 4 {
        return Err(format!(
            "graph input `{}` has rank {}, expected 4 (NCHW)",
            input.name,
            sh.dim.len()
        ));
    }
    let dims: Vec<String> = sh
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(Value::DimValue(v)) => v.to_string(),
            Some(Value::DimParam(p)) => p.clone(),
            None => "?".into(),
        })
        .collect();
    for (i, d) in sh.dim.iter().enumerate().skip(1) {
        if let Some(Value::DimValue(v)) = d.value {
            if v != shape[i] as i64 {
                return Err(format!("graph input `{}` is [{}]", input.name, dims.join(", ")));
            }
        }
    }
    Ok(())
}
