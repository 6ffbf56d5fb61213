#!/usr/bin/env python3
"""`scripts/bench`'s measuring part (see that script). Rounds alternate the engines so that both see
the same machine load: per round, `device bench --json` (fp32, then int8 when the bundle has it) and
onnxruntime on the same ONNX files; medians per round, then the median and range over rounds."""
import argparse
import json
import pathlib
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort


def device_bench(a, precision):
    cmd = [a.device, "bench", "--model", a.bundle, f"--{precision}", "--threads", str(a.threads),
           "--runs", str(a.runs), "--json"]
    if a.image:
        cmd += ["--image", a.image]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def station_rss(a, precision, frames=10):
    """Peak RSS (MB) of `device run` (the station service: folder source, stdout off) inspecting
    `frames` copies of the image (`--image`, else a grey PPM of input size) with the bundle at
    `precision`; its wall time per frame in ms."""
    import shutil
    import tempfile
    m = json.loads((pathlib.Path(a.bundle) / "manifest.json").read_text())["input"]
    with tempfile.TemporaryDirectory(prefix="glass-edge-bench-") as tmp:
        frames_dir = pathlib.Path(tmp) / "frames"
        frames_dir.mkdir()
        for i in range(frames):
            dst = frames_dir / f"{i:03d}{pathlib.Path(a.image).suffix if a.image else '.ppm'}"
            if a.image:
                shutil.copy(a.image, dst)
            else:
                w, h = m["width"], m["height"]
                dst.write_bytes(f"P6 {w} {h} 255\n".encode() + bytes([128]) * (w * h * 3))
        cfg = pathlib.Path(tmp) / "station.toml"
        cfg.write_text(
            f'station_id = "bench"\nmodel = "{pathlib.Path(a.bundle).resolve()}"\n'
            f'precision = "{precision}"\nthreads = {a.threads}\ninspect_window_ms = 60000\n'
            f'state_dir = "state"\nmax_frames = {frames}\n'
            f'[source]\nkind = "folder"\npath = "frames"\npoll_ms = 10\nsettle_ms = 0\n'
            f'[outputs]\nstdout = false\n')
        t = time.perf_counter()
        p = subprocess.Popen([a.device, "run", "--config", str(cfg)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        # The station's own high-water mark (VmHWM of its memory after exec), read until it exits:
        # a waited child's ru_maxrss would also count this Python process, which it was forked from.
        hwm_kb = 0
        while p.poll() is None:
            try:
                for line in pathlib.Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        hwm_kb = max(hwm_kb, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        wall = (time.perf_counter() - t) * 1e3
        if p.returncode != 0:
            raise SystemExit(f"device run on {a.bundle} failed (exit {p.returncode})")
        return hwm_kb / 1024, wall / frames


def ort_session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_bench(sess, x, runs):
    feed = {sess.get_inputs()[0].name: x}
    sess.run(None, feed)
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feed)
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


def ort_profile(path, threads, x, runs):
    """onnxruntime's own per-node profile: milliseconds per op kind (median per node, summed)."""
    import collections
    import os
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = "/tmp/glass-edge-ort-profile"
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(runs + 1):
        sess.run(None, feed)
    prof = sess.end_profiling()
    events = json.loads(pathlib.Path(prof).read_text())
    os.remove(prof)
    per_node = collections.defaultdict(list)
    kind = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[e["name"]].append(e["dur"] / 1000)
            kind[e["name"]] = e["args"].get("op_name", "?")
    totals = collections.defaultdict(lambda: [0, 0.0])
    for n, v in per_node.items():
        v = v[1:] or v
        totals[kind[n]][0] += 1
        totals[kind[n]][1] += statistics.median(v)
    return sorted(totals.items(), key=lambda kv: -kv[1][1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("--device", required=True)
    ap.add_argument("--build", default="dev")
    ap.add_argument("--image")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ort-profile", action="store_true",
                    help="also print onnxruntime's time per op kind (fp32)")
    a = ap.parse_args()
    bundle = pathlib.Path(a.bundle)
    m = json.loads((bundle / "manifest.json").read_text())
    files = m["files"]
    inp = m["input"]
    shape = (1, inp["channels"], inp["height"], inp["width"])
    golden = bundle / "golden.npz"
    if golden.exists():
        x = np.load(golden)["input"][:1].astype(np.float32).reshape(shape)
    else:
        x = np.zeros(shape, np.float32)
    precisions = ["fp32"] + (["int8"] if files.get("int8") else [])
    sessions = {p: ort_session(bundle / files[p]["path"], a.threads) for p in precisions}
    rows = {f"{k}_{p}": [] for p in precisions for k in ("device", "ort")}
    frame = {p: [] for p in precisions}
    rss = []
    for r in range(a.rounds):
        for p in precisions:
            d = device_bench(a, p)
            rows[f"device_{p}"].append(d["infer_ms"])
            frame[p].append(d["total_ms"])
            if d.get("peak_rss_kb"):
                rss.append(d["peak_rss_kb"] / 1024)
            rows[f"ort_{p}"].append(ort_bench(sessions[p], x, a.runs))
        done = ", ".join(f"{k} {v[-1]:.1f}" for k, v in rows.items())
        print(f"round {r + 1}/{a.rounds}: {done} ms", file=sys.stderr)

    def med(v):
        return round(statistics.median(v), 2) if v else None

    def rng(v):
        return f"{min(v):.1f}-{max(v):.1f}" if v else "-"

    print(f"{bundle} {inp['width']}x{inp['height']}, {a.threads} thread(s), {a.runs} runs x "
          f"{a.rounds} rounds, device build: {a.build}, {platform.machine()}")
    print(f"  {'engine':<10} {'precision':<9} {'inference ms (median)':>22} {'range over rounds':>18} "
          f"{'whole frame ms':>15}")
    for p in precisions:
        print(f"  {'device':<10} {p:<9} {med(rows[f'device_{p}']):>22} {rng(rows[f'device_{p}']):>18} "
              f"{med(frame[p]):>15}")
        print(f"  {'onnxrt':<10} {p:<9} {med(rows[f'ort_{p}']):>22} {rng(rows[f'ort_{p}']):>18} "
              f"{'-':>15}")
    if a.ort_profile:
        kinds = ort_profile(bundle / files["fp32"]["path"], a.threads, x, a.runs)
        total = sum(t for _, (_, t) in kinds) or 1.0
        print(f"\n  onnxruntime fp32 profile (median per node, summed): {total:.2f} ms")
        print(f"  {'op kind':<24} {'nodes':>6} {'ms':>9} {'share':>7}")
        for k, (n, t) in kinds:
            print(f"  {k:<24} {n:>6} {t:>9.3f} {100 * t / total:>6.1f}%")
    best = min(precisions, key=lambda p: med(rows[f"device_{p}"]))
    run_rss, run_ms = station_rss(a, best)
    print(f"  device run (station, {best}, 10 frames): peak RSS {run_rss:.1f} MB, "
          f"{run_ms:.1f} ms per frame incl. start-up")
    out = {
        "bundle": str(bundle),
        "input": f"{inp['width']}x{inp['height']}",
        "threads": a.threads,
        "runs": a.runs,
        "rounds": a.rounds,
        "build": a.build,
        "machine": f"{platform.machine()} {platform.system().lower()}",
        "onnxruntime": ort.__version__,
        "device_fp32_ms": med(rows["device_fp32"]),
        "device_int8_ms": med(rows.get("device_int8", [])),
        "ort_fp32_ms": med(rows["ort_fp32"]),
        "ort_int8_ms": med(rows.get("ort_int8", [])),
        "device_frame_ms": med(frame[best]),
        "device_best_precision": best,
        "device_peak_rss_mb": round(max(rss), 1) if rss else None,
        "device_run_peak_rss_mb": round(run_rss, 1),
        "ratio": round(med(rows[f"device_{best}"]) / med(rows["ort_fp32"]), 3),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
