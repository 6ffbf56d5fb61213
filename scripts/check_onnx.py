#!/usr/bin/env python3
"""Independent check of a model bundle with the reference ONNX tooling.

Usage: check_onnx.py BUNDLE_DIR [--model model_fp32.onnx] [--threads 1] [--bench N]

- onnx.checker.check_model(full_check=True) on the model;
- onnxruntime (CPU) on golden.npz's inputs, compared with the libtorch outputs stored there
  (max abs diff of every output present in both);
- with --bench N: median onnxruntime latency over N runs of one input (batch 1).
Prints one JSON object.
"""
import argparse
import json
import pathlib
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("--model", default="model_fp32.onnx")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bench", type=int, default=0)
    a = ap.parse_args()
    bundle = pathlib.Path(a.bundle)
    path = bundle / a.model
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    out = {
        "model": str(path),
        "checker": "ok",
        "ir_version": model.ir_version,
        "opset": [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")],
        "ops": sorted({n.op_type for n in model.graph.node}),
    }
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    golden = np.load(bundle / "golden.npz")
    x = golden["input"].astype(np.float32)
    names = [o.name for o in sess.get_outputs()]
    diffs = {}
    results = {n: [] for n in names}
    for i in range(x.shape[0]):
        r = sess.run(None, {sess.get_inputs()[0].name: x[i : i + 1]})
        for n, v in zip(names, r):
            results[n].append(v)
    for n in names:
        got = np.concatenate(results[n], axis=0)
        if n in golden.files:
            want = golden[n].astype(np.float32).reshape(got.shape)
            diffs[n] = float(np.max(np.abs(got - want)))
    out["max_abs_diff"] = diffs
    out["n_inputs"] = int(x.shape[0])
    if a.bench > 0:
        feed = {sess.get_inputs()[0].name: x[:1]}
        sess.run(None, feed)
        ts = []
        for _ in range(a.bench):
            t = time.perf_counter()
            sess.run(None, feed)
            ts.append((time.perf_counter() - t) * 1e3)
        out["ort_latency_ms"] = statistics.median(ts)
        out["ort_threads"] = a.threads
    print(json.dumps(out))


if __name__ == "__main__":
    main()
