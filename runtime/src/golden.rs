//! The self-test at load (README.md, "Loading a bundle"): a bundle's `golden.npz` holds a few
//! preprocessed validation inputs with the outputs libtorch gave them at export. [`Engine`] runs each
//! input through the model it loaded and refuses the bundle when any output (every patch score or
//! logit, and the image score) differs from libtorch's by more than the manifest's tolerance for that
//! model file. It catches what a hash cannot: a runtime or CPU kernel that computes something else on
//! this board, a graph this tract version optimises wrongly, golden vectors that belong to another
//! model.
//!
//! `golden.npz` is a zip of NumPy `.npy` arrays (float32, C order), as libtorch's `write_npz` writes
//! it. The reader here takes only that (a few lines over the `zip` crate): the `.npy` crates pull in a
//! Python-literal parser whose build script needs a C toolchain for the board, and the station only
//! ever reads files this project wrote.
use std::collections::BTreeMap;
use std::io::Read;

use shared::manifest::ModelKind;

use crate::error::EngineError;

/// Largest uncompressed array the reader accepts (a deflate bomb must not exhaust a board's memory).
const MAX_ARRAY_BYTES: u64 = 256 << 20;

/// A float32 array from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Values in C order.
    pub data: Vec<f32>,
}

/// Reads every `NAME.npy` of an `.npz` archive into `NAME -> Array`.
///
/// # Errors
/// Not a zip archive, a member that is not a little-endian float32 C-order `.npy`, or one larger than
/// 256 MiB uncompressed.
pub fn read_npz(bytes: &[u8]) -> Result<BTreeMap<String, Array>, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not an .npz (zip) archive: {e}"))?;
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut member = zip.by_index(i).map_err(|e| format!("member {i}: {e}"))?;
        let name = member.name().to_string();
        if member.size() > MAX_ARRAY_BYTES {
            return Err(format!(
                "{name}: {} bytes uncompressed (limit {MAX_ARRAY_BYTES})",
                member.size()
            ));
        }
        let mut buf = Vec::with_capacity(member.size() as usize);
        (&mut member)
            .take(MAX_ARRAY_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|e| format!("{name}: {e}"))?;
        if buf.len() as u64 > MAX_ARRAY_BYTES {
            return Err(format!("{name}: larger than {MAX_ARRAY_BYTES} bytes uncompressed"));
        }
        let array = parse_npy(&buf).map_err(|e| format!("{name}: {e}"))?;
        out.insert(name.trim_end_matches(".npy").to_string(), array);
    }
    Ok(out)
}

/// Writes arrays as an `.npz` (stored zip of `NAME.npy`, format 1.0), the form [`read_npz`] reads.
///
/// # Errors
/// The zip writer fails (it writes to memory, so only on a too-large archive).
pub fn write_npz(arrays: &[(&str, &Array)]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, a) in arrays {
        zip.start_file(format!("{name}.npy"), options).map_err(|e| format!("{name}: {e}"))?;
        let dims: Vec<String> = a.shape.iter().map(usize::to_string).collect();
        let shape = if dims.len() == 1 {
            format!("({},)", dims[0])
        } else {
            format!("({})", dims.join(", "))
        };
        let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        // Pad so the data starts at a multiple of 64 bytes, ending the header with a newline.
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        a.data.iter().for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
        zip.write_all(&b).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(zip.finish().map_err(|e| e.to_string())?.into_inner())
}

/// Parses one `.npy` (format versions 1-3) holding little-endian float32 in C order.
fn parse_npy(b: &[u8]) -> Result<Array, String> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err("not a .npy array (bad magic)".into());
    }
    let (header_len, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10usize),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let end = start.checked_add(header_len).filter(|e| *e <= b.len()).ok_or("truncated header")?;
    let header = std::str::from_utf8(&b[start..end]).map_err(|_| "header is not text")?;
    let descr = dict_value(header, "descr").ok_or("header has no descr")?;
    let descr = descr.split(',').next().unwrap_or_default().trim();
    if !matches!(descr.trim_matches(|c| c == '\'' || c == '"'), "<f4" | "float32") {
        return Err(format!("dtype {descr}, expected little-endian float32 '<f4'"));
    }
    if dict_value(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err("Fortran order is not supported".into());
    }
    let shape_text = dict_value(header, "shape").ok_or("header has no shape")?;
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| format!("shape {shape_text} is not a tuple"))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("shape entry `{s}`")))
        .collect::<Result<Vec<_>, _>>()?;
    let n = shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d)).ok_or("shape overflows")?;
    let body = &b[end..];
    if Some(body.len()) != n.checked_mul(4) {
        return Err(format!("shape {shape:?} needs {n} floats, the body has {} bytes", body.len()));
    }
    let data = body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok(Array { shape, data })
}

/// The text after `'key':` in a Python dict literal, up to the end of the header.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))?;
    let rest = &header[at + key.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}

/// The golden vectors of one bundle, split per image.
#[derive(Debug, Clone)]
pub struct Golden {
    /// Preprocessed inputs, `C*H*W` each.
    pub inputs: Vec<Vec<f32>>,
    /// libtorch's patch scores (map models) or logits (classifier), per image.
    pub outputs: Vec<Vec<f32>>,
    /// libtorch's image score (map models) or abnormal probability (classifier), per image.
    pub scores: Vec<f32>,
}

/// The `.npz` names of the per-position output and the image score for a model kind (what
/// `host export` writes).
pub fn output_names(kind: ModelKind) -> (&'static str, &'static str) {
    match kind {
        ModelKind::Glass | ModelKind::Patchcore => ("patch_scores", "image_score"),
        ModelKind::Classifier => ("logits", "abnormal_prob"),
    }
}

impl Golden {
    /// Parses `golden.npz` for a model of `kind` whose input has `input_len` values.
    ///
    /// # Errors
    /// What [`read_npz`] reports, a missing array, or arrays whose sizes do not fit together.
    pub fn parse(bytes: &[u8], kind: ModelKind, input_len: usize) -> Result<Golden, String> {
        let arrays = read_npz(bytes)?;
        let get = |name: &str| arrays.get(name).ok_or_else(|| format!("no array `{name}`"));
        let (out_name, score_name) = output_names(kind);
        let (input, out, score) = (get("input")?, get(out_name)?, get(score_name)?);
        let n = input.shape.first().copied().unwrap_or(0);
        if n == 0 || input.data.len() != n * input_len {
            return Err(format!(
                "`input` has shape {:?}, expected N x {input_len} values (the manifest's input)",
                input.shape
            ));
        }
        if out.shape.first() != Some(&n) || out.data.len() % n != 0 {
            return Err(format!("`{out_name}` has shape {:?}, expected {n} images", out.shape));
        }
        if score.data.len() != n {
            return Err(format!("`{score_name}` has {} values, expected {n}", score.data.len()));
        }
        let per = out.data.len() / n;
        Ok(Golden {
            inputs: input.data.chunks(input_len).map(<[f32]>::to_vec).collect(),
            outputs: out.data.chunks(per.max(1)).map(<[f32]>::to_vec).collect(),
            scores: score.data.clone(),
        })
    }

    /// Largest absolute difference between a runtime's raw outputs and libtorch's, over every image,
    /// every output value and the image score (a NaN anywhere counts as infinite). `run` maps one
    /// preprocessed input to the runtime's output values and image score (the engine's
    /// `Engine::golden_difference` passes its own).
    ///
    /// # Errors
    /// `run` fails on an input, or gives a different number of values than the golden file.
    pub fn max_difference(
        &self,
        mut run: impl FnMut(&[f32]) -> Result<(Vec<f32>, f32), EngineError>,
    ) -> Result<f32, EngineError> {
        let mut worst = 0f32;
        let diff = |a: f32, b: f32| {
            let d = (a - b).abs();
            if d.is_nan() {
                f32::INFINITY
            } else {
                d
            }
        };
        for ((input, want), score) in self.inputs.iter().zip(&self.outputs).zip(&self.scores) {
            let (values, image_score) = run(input)?;
            if values.len() != want.len() {
                return Err(EngineError::Run(format!(
                    "the model gives {} output values per image, golden.npz has {}",
                    values.len(),
                    want.len()
                )));
            }
            for (a, b) in values.iter().zip(want) {
                worst = worst.max(diff(*a, *b));
            }
            worst = worst.max(diff(image_score, *score));
        }
        Ok(worst)
    }
}

/// What the self-test at load measured.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SelfTest {
    /// Golden images run.
    pub images: usize,
    /// Largest absolute difference from libtorch's outputs.
    pub max_difference: f32,
    /// The manifest's tolerance for the loaded model file.
    pub tolerance: f32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(shape: &str, data: &[f32]) -> Vec<u8> {
        let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        for v in data {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    #[test]
    fn npy_shapes_and_refusals() {
        let a = parse_npy(&npy("(2, 3)", &[1., 2., 3., 4., 5., 6.])).expect("2x3");
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data[5], 6.0);
        let s = parse_npy(&npy("(3,)", &[1., 2., 3.])).expect("1-d");
        assert_eq!(s.shape, vec![3]);
        assert!(parse_npy(&npy("(2, 3)", &[1., 2.])).expect_err("short").contains("needs 6"));
        let f8 = npy("(1,)", &[0., 0.])
            .iter()
            .map(|b| if *b == b'4' { b'8' } else { *b })
            .collect::<Vec<_>>();
        assert!(parse_npy(&f8).expect_err("f8").contains("float32"));
        assert!(parse_npy(b"PK\x03\x04garbage").is_err());
        assert!(parse_npy(&npy("(4294967296, 4294967296, 4294967296)", &[])).is_err());
    }

    #[test]
    fn npz_round_trip() {
        let a = Array { shape: vec![2, 2], data: vec![1.0, -2.5, 3.0, f32::MAX] };
        let b = Array { shape: vec![1], data: vec![0.25] };
        let bytes = write_npz(&[("a", &a), ("b", &b)]).expect("write");
        let back = read_npz(&bytes).expect("read");
        assert_eq!(back.get("a"), Some(&a));
        assert_eq!(back.get("b"), Some(&b));
        assert!(read_npz(b"not a zip").is_err());
    }
}
