"""Soak driver for `scripts/soak` (see there). Standard library only.

The feeder writes frames into the station's folder source a few ahead of what the station has
reported on stdout (one line per frame), removes the ones it has read, restarts the broker at evenly
spaced points of the run, samples the station's RSS and open descriptors, and at the end counts the
MQTT results a persistent QoS 1 subscriber (mosquitto_sub) received, by uid.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, seconds=10.0):
    end = time.time() + seconds
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def proc_stats(pid):
    rss_kb = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss_kb / 1024.0, fds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", required=True)
    ap.add_argument("--demo", required=True)
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--ahead", type=int, default=16, help="frames written ahead of the station")
    ap.add_argument("--out", default=None, help="folder for soak.json (default: a temp folder)")
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="glass-edge-soak."))
    out = Path(a.out) if a.out else work
    out.mkdir(parents=True, exist_ok=True)
    demo = Path(a.demo).resolve()
    samples = sorted((demo / "samples").glob("*.png"))
    inbox = work / "inbox"
    inbox.mkdir()
    port = free_port()
    conf = work / "mosquitto.conf"
    # mosquitto started as root drops to its own user: the persistence folder must be writable by it,
    # or the subscriber's session (and the results queued for it) would not survive a restart.
    os.chmod(work, 0o755)
    (work / "db").mkdir(mode=0o777)
    os.chmod(work / "db", 0o777)
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {work}/db/\nautosave_interval 1\nmax_queued_messages 0\n"
    )

    def start_broker():
        p = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        if not wait_port(port):
            sys.exit("mosquitto did not start")
        return p

    broker = start_broker()
    received_path = work / "received.jsonl"
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-c", "-i", "soak-sub",
         "-t", "soak/st/result"],
        stdout=open(received_path, "w"), stderr=subprocess.DEVNULL)
    time.sleep(0.5)

    cfg = work / "station.toml"
    cfg.write_text(
        f'station_id = "st"\nmodel = "{demo}"\ninspect_window_ms = 20000\nstate_dir = "state"\n'
        f"max_frames = {a.frames}\n[source]\nkind = \"folder\"\npath = \"inbox\"\npoll_ms = 2\n"
        f"settle_ms = 1\n[outputs]\nstdout = true\n[outputs.mqtt]\nhost = \"127.0.0.1\"\n"
        f'port = {port}\nprefix = "soak"\n'
    )
    station = subprocess.Popen([a.device, "run", "--config", str(cfg)], cwd=work,
                               stdout=subprocess.PIPE, stderr=open(work / "station.err", "w"),
                               text=True)
    processed = [0]
    verdicts = {}

    def read_stdout():
        for line in station.stdout:
            try:
                v = json.loads(line).get("verdict", "?")
            except ValueError:
                v = "unparsed"
            verdicts[v] = verdicts.get(v, 0) + 1
            processed[0] += 1

    threading.Thread(target=read_stdout, daemon=True).start()

    restart_at = [a.frames * (k + 1) // (a.restarts + 1) for k in range(a.restarts)]
    warmup = min(1000, a.frames // 10)
    samples_taken = []
    written = 0
    removed = 0
    t0 = time.time()
    last_print = 0.0
    while processed[0] < a.frames and station.poll() is None:
        done = processed[0]
        while written < a.frames and written < done + a.ahead:
            src = samples[written % len(samples)]
            tmp = work / f"f{written:08d}.part"
            shutil.copyfile(src, tmp)
            os.rename(tmp, inbox / f"f{written:08d}.png")
            written += 1
        # The station reads files in name order; the ones it has reported are gone from its way.
        while removed < done - 2:
            try:
                os.remove(inbox / f"f{removed:08d}.png")
            except FileNotFoundError:
                pass
            removed += 1
        if (not samples_taken and done >= warmup) or (
                samples_taken and done >= samples_taken[-1][0] + a.frames // 10):
            rss, fds = proc_stats(station.pid)
            samples_taken.append((done, rss, fds, time.time() - t0))
        if restart_at and done >= restart_at[0]:
            restart_at.pop(0)
            broker.send_signal(signal.SIGTERM)
            broker.wait()
            time.sleep(3.0)
            broker = start_broker()
        now = time.time()
        if now - last_print > 2.0:
            last_print = now
            frac = done / a.frames
            bar = "=" * int(30 * frac) + ">" + " " * (30 - int(30 * frac))
            rate = done / max(now - t0, 1e-9)
            print(f"\r      soak [{bar}] {done}/{a.frames} {rate:.0f} frames/s", end="", flush=True)
        time.sleep(0.002)
    # The last sample just before the station's exit.
    try:
        rss, fds = proc_stats(station.pid)
        samples_taken.append((processed[0], rss, fds, time.time() - t0))
    except (FileNotFoundError, ProcessLookupError):
        pass
    code = station.wait(timeout=120)
    print()
    # Let the subscriber drain what the broker still holds.
    end = time.time() + 30
    uids = {}
    while time.time() < end:
        uids = {}
        dup = 0
        for line in received_path.read_text().splitlines():
            try:
                u = json.loads(line)["uid"]
            except (ValueError, KeyError):
                continue
            if u in uids:
                dup += 1
            uids[u] = True
        if len(uids) >= processed[0]:
            break
        time.sleep(1.0)
    sub.terminate()
    broker.send_signal(signal.SIGTERM)
    broker.wait()
    first, last = samples_taken[0], samples_taken[-1]
    report = {
        "frames": a.frames,
        "broker_restarts": a.restarts,
        "station_exit_code": code,
        "seconds": round(time.time() - t0, 1),
        "results_on_stdout": processed[0],
        "verdicts": verdicts,
        "results_received_unique": len(uids),
        "results_received_duplicates": dup,
        "results_lost": processed[0] - len(uids),
        "rss_mb_after_warmup": round(first[1], 1),
        "rss_mb_end": round(last[1], 1),
        "rss_change_pct": round(100.0 * (last[1] - first[1]) / first[1], 2),
        "fds_after_warmup": first[2],
        "fds_end": last[2],
        "samples": [{"frames": f, "rss_mb": round(r, 1), "fds": d, "s": round(s, 1)}
                    for f, r, d, s in samples_taken],
    }
    (out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'frames':>10} {'rss MB':>8} {'fds':>5} {'s':>8}")
    for f, r, d, s in samples_taken:
        print(f"{f:>10} {r:>8.1f} {d:>5} {s:>8.1f}")
    print(f"station exit {code}; {processed[0]} results on stdout {verdicts}; received "
          f"{len(uids)} unique over MQTT ({dup} duplicates), lost {processed[0] - len(uids)}; "
          f"RSS {first[1]:.1f} -> {last[1]:.1f} MB ({report['rss_change_pct']:+.2f}%), fds "
          f"{first[2]} -> {last[2]}")
    print(f"-> {out / 'soak.json'} (work folder {work})")
    ok = code == 0 and report["results_lost"] == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
