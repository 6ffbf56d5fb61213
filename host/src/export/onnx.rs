//! A small ONNX graph writer on tract's prost-generated protobuf types (`tract_onnx::pb`).
//!
//! What it writes: opset 17, IR version 8, every initializer as `raw_data` (little-endian), graph inputs
//! and outputs with full shapes (`dim_param` "batch" for a dynamic batch). Node and tensor names are
//! unique by construction ([`GraphBuilder::fresh`]). tch has no ONNX exporter; the model exporters
//! ([`super::glass`]) walk the trained weights and emit nodes here.
use prost::Message;
use tch::{Kind, Tensor};
use tract_onnx::pb;

use crate::{Error, Result};

/// ONNX opset version written into every model.
pub const OPSET: i64 = 17;
/// ONNX IR version (8: opset 17's era; onnx.checker accepts it).
pub const IR_VERSION: i64 = 8;

/// One tensor dimension of a graph input/output.
#[derive(Debug, Clone)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A named symbolic size (e.g. "batch").
    Param(&'static str),
}

/// An attribute value.
#[derive(Debug, Clone)]
pub enum Attr {
    /// One integer.
    Int(i64),
    /// Integers.
    Ints(Vec<i64>),
    /// One float.
    Float(f32),
    /// A string.
    Str(&'static str),
}

/// Builds one graph.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
    counter: usize,
}

fn value_info(name: &str, elem: pb::tensor_proto::DataType, dims: &[Dim]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            denotation: String::new(),
            value: Some(match d {
                Dim::Fixed(v) => Value::DimValue(*v),
                Dim::Param(p) => Value::DimParam((*p).to_string()),
            }),
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    }
}

fn attribute(name: &str, a: &Attr) -> pb::AttributeProto {
    use pb::attribute_proto::AttributeType as T;
    let mut p = pb::AttributeProto { name: name.to_string(), ..Default::default() };
    match a {
        Attr::Int(v) => {
            p.r#type = T::Int as i32;
            p.i = *v;
        }
        Attr::Ints(v) => {
            p.r#type = T::Ints as i32;
            p.ints = v.clone();
        }
        Attr::Float(v) => {
            p.r#type = T::Float as i32;
            p.f = *v;
        }
        Attr::Str(s) => {
            p.r#type = T::String as i32;
            p.s = s.as_bytes().to_vec();
        }
    }
    p
}

impl GraphBuilder {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh unique tensor name with a readable prefix.
    pub fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}_{}", self.counter)
    }

    /// Declares a float graph input.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> String {
        self.inputs.push(value_info(name, pb::tensor_proto::DataType::Float, dims));
        name.to_string()
    }

    /// Declares a float graph output (the tensor `name` must be produced by a node).
    pub fn output(&mut self, name: &str, dims: &[Dim]) {
        self.outputs.push(value_info(name, pb::tensor_proto::DataType::Float, dims));
    }

    /// Adds an f32 initializer from a tch tensor (any device/kind; stored contiguous, row-major).
    pub fn init_tensor(&mut self, prefix: &str, t: &Tensor) -> Result<String> {
        let t = t.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
        let dims = t.size();
        let v: Vec<f32> = Vec::<f32>::try_from(t.reshape([-1]))?;
        Ok(self.init_f32(prefix, &dims, &v))
    }

    /// Adds an f32 initializer.
    pub fn init_f32(&mut self, prefix: &str, dims: &[i64], v: &[f32]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.init_raw(prefix, dims, pb::tensor_proto::DataType::Float, raw)
    }

    /// Adds an i64 initializer.
    pub fn init_i64(&mut self, prefix: &str, dims: &[i64], v: &[i64]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.init_raw(prefix, dims, pb::tensor_proto::DataType::Int64, raw)
    }

    /// Adds an u8 initializer.
    pub fn init_u8(&mut self, prefix: &str, dims: &[i64], v: &[u8]) -> String {
        self.init_raw(prefix, dims, pb::tensor_proto::DataType::Uint8, v.to_vec())
    }

    /// Adds an i8 initializer.
    pub fn init_i8(&mut self, prefix: &str, dims: &[i64], v: &[i8]) -> String {
        let raw = v.iter().map(|&x| x as u8).collect();
        self.init_raw(prefix, dims, pb::tensor_proto::DataType::Int8, raw)
    }

    /// Adds an i32 initializer.
    pub fn init_i32(&mut self, prefix: &str, dims: &[i64], v: &[i32]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.init_raw(prefix, dims, pb::tensor_proto::DataType::Int32, raw)
    }

    fn init_raw(
        &mut self,
        prefix: &str,
        dims: &[i64],
        dt: pb::tensor_proto::DataType,
        raw: Vec<u8>,
    ) -> String {
        let name = self.fresh(prefix);
        self.initializers.push(pb::TensorProto {
            dims: dims.to_vec(),
            data_type: dt as i32,
            name: name.clone(),
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    /// Adds a node with one output named by `out` (or a fresh name from the op type) and returns it.
    pub fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: &[(&str, Attr)],
        out: Option<&str>,
    ) -> String {
        let out = out.map(str::to_string).unwrap_or_else(|| self.fresh(&op.to_lowercase()));
        let name = self.fresh(op);
        self.nodes.push(pb::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name,
            op_type: op.to_string(),
            domain: String::new(),
            attribute: attrs.iter().map(|(n, a)| attribute(n, a)).collect(),
            doc_string: String::new(),
        });
        out
    }

    /// Adds a node with several named outputs (e.g. `Split`).
    pub fn node_multi(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)], outs: &[&str]) {
        let name = self.fresh(op);
        self.nodes.push(pb::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outs.iter().map(|s| s.to_string()).collect(),
            name,
            op_type: op.to_string(),
            domain: String::new(),
            attribute: attrs.iter().map(|(n, a)| attribute(n, a)).collect(),
            doc_string: String::new(),
        });
    }

    /// Drains the nodes added so far (for graph rewriters that splice them into another graph).
    pub fn take_nodes(&mut self) -> Vec<pb::NodeProto> {
        std::mem::take(&mut self.nodes)
    }

    /// Drains the initializers added so far.
    pub fn take_initializers(&mut self) -> Vec<pb::TensorProto> {
        std::mem::take(&mut self.initializers)
    }

    /// The first value of an f32 initializer added by this builder (NaN if unknown).
    pub fn value_f32(&self, name: &str) -> f32 {
        self.initializers
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| t.raw_data.get(..4))
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(f32::NAN)
    }

    /// The finished model.
    pub fn finish(self, graph_name: &str, doc: &str) -> pb::ModelProto {
        pb::ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: OPSET }],
            producer_name: "glass-edge host".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            graph: Some(pb::GraphProto {
                node: self.nodes,
                name: graph_name.into(),
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// Serialises a model to a file.
pub fn write_model(model: &pb::ModelProto, path: &std::path::Path) -> Result<()> {
    let bytes = model.encode_to_vec();
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// Conv-layer helpers shared by the exporters: a convolution with its BatchNorm folded in.
pub struct FoldedConv {
    /// `[out, in/groups, kh, kw]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Tensor,
}

/// Folds eval-mode BatchNorm (`gamma`, `beta`, running mean/var, `eps`) into a conv weight (+ bias).
pub fn fold_bn(
    weight: &Tensor,
    bias: Option<&Tensor>,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
) -> FoldedConv {
    tch::no_grad(|| {
        let inv = gamma / (var + eps).sqrt();
        let shape: Vec<i64> = std::iter::once(-1).chain(std::iter::repeat_n(1, 3)).collect();
        let w = weight * inv.view(shape.as_slice());
        let b0 = bias.map(|b| b.shallow_clone()).unwrap_or_else(|| mean.zeros_like());
        let b = (b0 - mean) * &inv + beta;
        FoldedConv { weight: w, bias: b }
    })
}
