#!/usr/bin/env python3
"""Helpers of bench/run.sh (standard library only).

  report.py h2load LABEL URL OUTPUT LOGFILE SECONDS WARMUP CONNS CONC ANSWER_FILE_BYTES
      h2load's output and --log-file as one JSON summary line shaped like `huitong bench load`'s;
      exits 1 unless every request got HTTP 200 (h2load sees HTTP statuses only).
  report.py half-min RESULTS LABEL...
      half the smallest closed-loop throughput among LABELs: the open-loop rate.
  report.py stages START AFTER_MISS AFTER_HIT
      the broker's /metrics scraped before and after its two runs, as JSON: per run, the mean
      time of an exchange and of each stage, and log entries per fdatasync.
  report.py report RESULTS LOG_MD OUTDIR MACHINE PROFILE COMMIT
      writes OUTDIR/results.md (tables) and OUTDIR/results.svg (bar chart); reads
      stages.json next to RESULTS if it is there.
"""

import datetime
import html
import os
import json
import re
import sys

# The setups in table order: (row, label, what, TLS on the client's side).
SETUPS = [
    ("1", "direct", "client → adapter", "mutual TLS"),
    ("2", "nginx-tls", "client → nginx grpc_pass → adapter", "mutual TLS, then grpcs"),
    ("2", "nginx-h2c", "client → nginx grpc_pass → adapter", "none (h2c), then grpcs"),
    ("3", "huitong-miss", "client → broker → adapter; cache off, policy, durable log", "mutual TLS, both hops"),
    ("3b", "huitong-search", "as 3, a 100-record search page (subjects of all 100 recorded)", "mutual TLS, both hops"),
    ("4", "huitong-hit", "client → broker (cache) → adapter; policy, durable log", "mutual TLS, both hops"),
    ("5", "h2load-nghttpd-tls", "h2load → nghttpd, static answer (the limit)", "TLS (server only)"),
    ("5", "h2load-nghttpd-h2c", "h2load → nghttpd, static answer (the limit)", "none (h2c)"),
    ("5b", "static-tls", "huitong bench load → nghttpd, static answer", "TLS (server only)"),
    ("5b", "static-h2c", "huitong bench load → nghttpd, static answer", "none (h2c)"),
]
OPEN_SETUPS = ["direct", "nginx-tls", "nginx-h2c", "huitong-miss", "huitong-hit"]


def percentile(sorted_values, q):
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values) + 0.5)) - 1))
    return sorted_values[i]


def h2load(label, url, output, logfile, seconds, warmup, conns, conc, answer_file_bytes):
    text = open(output, encoding="utf-8", errors="replace").read()
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    if not (m and s and rps):
        sys.exit(f"cannot read h2load's output {output}")
    total, _, done, succeeded, failed, errored, timeout = map(int, m.groups())
    ok2xx = int(s.group(1))
    lat = []
    codes = {}
    with open(logfile, encoding="utf-8") as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) < 3:
                continue
            codes[parts[1]] = codes.get(parts[1], 0) + 1
            lat.append(int(parts[2]) / 1000.0)
    lat.sort()
    errors = {f"HTTP_{c}": n for c, n in codes.items() if c != "200"}
    for name, n in (("failed", failed), ("errored", errored), ("timeout", timeout)):
        if n:
            errors[f"h2load_{name}"] = n
    if ok2xx != done:
        errors["HTTP_not_2xx"] = done - ok2xx
    summary = {
        "label": label, "tool": "h2load", "target": "adapter", "addr": url,
        "tls": url.startswith("https:"), "mode": "closed", "rate": None,
        "connections": int(conns), "concurrency": int(conc),
        "warmup_s": float(warmup), "duration_s": float(seconds),
        "requests": total, "answers": done, "errors": sum(errors.values()),
        "errors_by_code": errors, "throughput_rps": float(rps.group(1)),
        "latency_ms": {
            "p50": percentile(lat, 0.5), "p90": percentile(lat, 0.9),
            "p99": percentile(lat, 0.99), "p999": percentile(lat, 0.999),
            "max": lat[-1] if lat else 0.0, "mean": sum(lat) / len(lat) if lat else 0.0,
        },
        "answer_bytes": int(answer_file_bytes) - 5,
    }
    print(json.dumps(summary, ensure_ascii=False))
    if summary["errors"] or succeeded != done or not done:
        sys.exit(1)


def metrics(path):
    """OpenMetrics text as {(name, labels): value}, labels as the raw `{...}` text."""
    out = {}
    for line in open(path, encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def stages(start, after_miss, after_hit):
    snaps = [metrics(p) for p in (start, after_miss, after_hit)]

    def total(snap, name, label_filter=""):
        return sum(v for (n, l), v in snap.items() if n == name and label_filter in l)

    result = {}
    for run, (a, b) in (("huitong-miss", (snaps[0], snaps[1])), ("huitong-hit", (snaps[1], snaps[2]))):
        def mean_ms(name, label_filter=""):
            n = total(b, f"{name}_count", label_filter) - total(a, f"{name}_count", label_filter)
            s = total(b, f"{name}_sum", label_filter) - total(a, f"{name}_sum", label_filter)
            return (1000.0 * s / n if n else None), int(n)

        exchange, count = mean_ms("huitong_exchange_duration_seconds")
        entry = {"exchanges": count, "exchange_ms": exchange}
        for stage in ("policy", "adapter", "log_append"):
            entry[f"{stage}_ms"], entry[f"{stage}_count"] = mean_ms(
                "huitong_stage_duration_seconds", f'stage="{stage}"')
        entries = total(b, "huitong_log_entries") - total(a, "huitong_log_entries")
        syncs = total(b, "huitong_log_syncs") - total(a, "huitong_log_syncs")
        entry["entries_per_sync"] = entries / syncs if syncs else None
        result[run] = entry
    print(json.dumps(result))


def load(results):
    runs = []
    with open(results, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                runs.append(json.loads(line))
    return runs


def find(runs, label, mode):
    for r in runs:
        if r.get("label") == label and r.get("mode") == mode:
            return r
    return None


def half_min(results, labels):
    runs = load(results)
    rates = [find(runs, label, "closed")["throughput_rps"] for label in labels]
    print(max(1, int(min(rates) / 2)))


def fmt(x, digits=2):
    return "–" if x is None else f"{x:.{digits}f}"


def report(results, log_md, outdir, machine, profile, commit, events_txt=None):
    runs = load(results)
    closed = {label: find(runs, label, "closed") for _, label, _, _ in SETUPS}
    opened = {label: find(runs, label, "open") for label in OPEN_SETUPS}
    conns = next((r for r in runs if r.get("kind") == "connections"), None)
    direct = closed["direct"]
    shape = direct or next(r for r in runs if r.get("mode") == "closed")

    def thr(label):
        r = closed.get(label)
        return r["throughput_rps"] if r else None

    def ratio(a, b):
        return None if a is None or not b else a / b

    out = []
    w = out.append
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    w("# Huitong benchmarks\n")
    w(f"Run {now}, commit {commit}, {profile} build. Machine: {machine}.")
    w("Every process (load generator, servers, nginx) shares this machine's cores; see "
      "[docs/performance.md](../docs/performance.md) for the method and what limits each figure.\n")
    w("## The exchange path side by side\n")
    w(f"Closed loop: {shape['connections']} HTTP/2 connections × {shape['concurrency']} requests in "
      f"flight, {shape['warmup_s']:g} s warm-up, {shape['duration_s']:g} s measured. Every setup "
      "answers the same request (one household-register record by `id_number`, fields "
      "`name,gender,birth_date,marital_status`); *answer bytes* is the answer message's size. "
      "Latency from send to answer.\n")
    w("| # | setup | TLS (client side) | answer bytes | answers/s | × (1) direct | × (2) nginx, TLS "
      "| p50 ms | p99 ms | p99.9 ms | errors |")
    w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row, label, what, tls in SETUPS:
        r = closed.get(label)
        if not r:
            w(f"| {row} | {what} | {tls} | | not run | | | | | | |")
            continue
        lat = r["latency_ms"]
        note = ""
        if label.startswith("huitong"):
            n = r.get("requests") or 0
            hits = r.get("from_cache", 0)
            note = f" ({100.0 * hits / n:.0f}% from cache)" if n else ""
        tool = " [h2load]" if r.get("tool") == "h2load" else ""
        w(f"| {row} | {what}{tool}{note} | {tls} | {r.get('answer_bytes') or '–'} | "
          f"{r['throughput_rps']:,.0f} | {fmt(ratio(r['throughput_rps'], thr('direct')))} | "
          f"{fmt(ratio(r['throughput_rps'], thr('nginx-tls')))} | {fmt(lat['p50'])} | "
          f"{fmt(lat['p99'])} | {fmt(lat['p999'])} | {r['errors']} |")
    w("| – | event fan-out (publish/subscribe) | | | see *Publish/subscribe fan-out* below | | | | | | |")
    w("")
    w("h2load counts HTTP statuses only; before each h2load run a few requests through "
      "`huitong bench load` checked that the static answer decodes and carries `grpc-status: 0`. "
      "h2load's latencies come from its `--log-file`.\n")

    rate = next((r["rate"] for r in opened.values() if r), None)
    if rate:
        w(f"### Latency at a fixed rate: {rate:,.0f} requests/s\n")
        w("Open loop: requests are due on a fixed schedule whatever the answers do, and latency is "
          "measured from each request's *due* time (no coordinated omission). The rate is half the "
          "slowest setup's closed-loop maximum above, so every setup runs at the same offered load. "
          "*Service* is from the actual send; *send lag* is how late the load generator sent "
          "(tokio's timer has millisecond granularity).\n")
        w("| setup | answers/s | p50 ms | p99 ms | p99.9 ms | p99 added over (1) | service p99 ms "
          "| send lag p99 ms | not sent | errors |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        d99 = opened["direct"]["latency_ms"]["p99"] if opened.get("direct") else None
        for label in OPEN_SETUPS:
            r = opened.get(label)
            if not r:
                continue
            what = next(f"({row}) {label}" for row, lab, _, _ in SETUPS if lab == label)
            lat = r["latency_ms"]
            added = None if d99 is None else lat["p99"] - d99
            w(f"| {what} | {r['throughput_rps']:,.0f} | {fmt(lat['p50'])} | {fmt(lat['p99'])} | "
              f"{fmt(lat['p999'])} | {fmt(added)} | {fmt(r['service_ms']['p99'])} | "
              f"{fmt(r['send_lag_ms']['p99'])} | {r.get('unsent', 0)} | {r['errors']} |")
        w("")

    w("![answers per second by setup](results.svg)\n")

    try:
        inside = json.load(open(results.rsplit("/", 1)[0] + "/stages.json", encoding="utf-8"))
    except (OSError, ValueError):
        inside = None
    if inside:
        w("### Inside the broker (its own metrics, closed-loop runs)\n")
        w("Mean time per exchange in the broker and per timed stage (`huitong_exchange_duration_seconds`, "
          "`huitong_stage_duration_seconds`); *adapter* is the hop to the adapter and back (on a hit, the cache lookup). "
          "The rest of the client's latency is queueing for CPU, TLS and HTTP/2 on both hops.\n")
        w("| run | exchanges | exchange ms | policy ms | adapter (or cache) ms | log append ms | log entries per fdatasync |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        for run in ("huitong-miss", "huitong-hit"):
            e = inside.get(run)
            if not e:
                continue
            w(f"| {run} | {e['exchanges']:,} | {fmt(e['exchange_ms'], 3)} | {fmt(e['policy_ms'], 3)} | "
              f"{fmt(e['adapter_ms'], 3)} ({e['adapter_count']:,} calls) | {fmt(e['log_append_ms'], 3)} | "
              f"{fmt(e['entries_per_sync'], 1)} |")
        w("")

    w("## Broker memory\n")
    if conns:
        w("| state | RSS MiB |")
        w("|---|---:|")
        w(f"| idle: started, catalogue loaded, no exchange yet | {conns['rss_idle_mib']:.1f} |")
        w(f"| after the load runs above | {conns['rss_after_load_mib']:.1f} |")
        w(f"| before opening connections | {fmt(conns.get('rss_before_mib'), 1)} |")
        w(f"| with {conns['opened']:,} mutual-TLS connections open (one health check each) | "
          f"{fmt(conns.get('rss_open_mib'), 1)} |")
        w("")
        per = conns.get("per_connection_kib")
        w(f"{conns['opened']:,} of {conns['requested']:,} connections opened in "
          f"{conns['open_seconds']:.1f} s (descriptor limit {conns['fd_limit']}); "
          f"{fmt(per, 1)} KiB per connection.")
        if conns.get("failure"):
            w(f" Opening stopped at the first failure: `{conns['failure']}`.")
        w("")

    w("## Goals (reported, not asserted)\n")
    w("| goal | measured | met |")
    w("|---|---|---|")

    def goal(text, value, ok):
        w(f"| {text} | {value} | {'yes' if ok else 'no' if ok is not None else '–'} |")

    r = ratio(thr("huitong-miss"), thr("nginx-tls"))
    goal("cache miss ≥ 1.5 × nginx grpc_pass (TLS) throughput", f"{fmt(r)} ×", None if r is None else r >= 1.5)
    r = ratio(thr("huitong-hit"), thr("direct"))
    hit = closed.get("huitong-hit") or {}
    hits = hit.get("from_cache", 0)
    goal("cache hit ≥ 0.8 × direct throughput",
         f"{fmt(r)} × ({hits:,} of {hit.get('requests', 0):,} answers from the cache)",
         None if r is None else r >= 0.8)
    if opened.get("direct") and opened.get("huitong-miss"):
        added = opened["huitong-miss"]["latency_ms"]["p99"] - opened["direct"]["latency_ms"]["p99"]
        goal(f"added p99 over direct ≤ 2 ms at half the maximum load ({rate:,.0f}/s)",
             f"{added:+.2f} ms (cache miss)", added <= 2.0)
    r = ratio(thr("huitong-search"), thr("huitong-miss"))
    goal("100-record search pages ≥ 0.8 × key lookups (exchanges/s, both uncached)", f"{fmt(r)} ×",
         None if r is None else r >= 0.8)
    log = open(log_md, encoding="utf-8").read()
    m = re.search(r"\| huitong log, 256 concurrent writers \| (\d+) \|", log)
    if m:
        n = int(m.group(1))
        goal("≥ 100,000 durable log appends/s", f"{n:,}/s (256 writers)", n >= 100_000)
    m = re.search(r"(?m)^\| 1000000 \| [\d.]+ \| [\d.]+ \| ([\d.]+) \|", log)
    if m:
        ms = float(m.group(1))
        goal("subject report < 100 ms at 10^6 entries (median)", f"{ms:.2f} ms", ms < 100)
    if conns:
        goal("broker RSS ≤ 50 MiB idle", f"{conns['rss_idle_mib']:.1f} MiB", conns["rss_idle_mib"] <= 50)
    w("")
    w(log.replace("## Exchange log on", "## Exchange log (`huitong bench log`) on"))
    events = []
    if events_txt and os.path.exists(events_txt):
        for line in open(events_txt, encoding="utf-8"):
            if line.startswith("{"):
                events.append(json.loads(line))
    if events:
        w("\n## Publish/subscribe fan-out (`huitong bench events`)\n")
        w("One publisher (an SDK adapter's `ChangeFeed`) through the broker (mutual TLS, the event "
          "log flushed and one exchange-log record per delivery) to N subscribers, all in one "
          "process. *Burst*: all events published at once, so the figure is throughput and latency "
          "includes the wait behind the burst; *paced*: published at a fixed rate, so latency is "
          "the delivery path's own.\n")
        w("| subscribers | published | events/s to all | deliveries/s | latency p50 ms | p99 ms | p99.9 ms |")
        w("|---:|---|---:|---:|---:|---:|---:|")
        for e in events:
            lat = e["latency_ms"]
            how = f"paced, {e['rate']:,}/s" if e.get("rate") else "burst"
            w(f"| {e['subscribers']} | {how}, {e['events']:,} events | {e['events_per_s']:,.0f} | "
              f"{e['deliveries_per_s']:,.0f} | {fmt(lat['p50'])} | {fmt(lat['p99'])} | {fmt(lat['p999'])} |")
        w("")

    with open(f"{outdir}/results.md", "w", encoding="utf-8") as f:
        f.write("\n".join(out).rstrip() + "\n")
    svg(closed, opened, f"{outdir}/results.svg", rate)


def svg(closed, opened, path, rate):
    """A horizontal bar chart of closed-loop throughput, with the open-loop p99 beside it."""
    rows = [(row, label, what, tls) for row, label, what, tls in SETUPS if closed.get(label)]
    # Scaled to the gRPC setups: h2load against a static server is often ten times faster and
    # would flatten every other bar; its bars are cut and marked.
    grpc = [closed[label]["throughput_rps"] for _, label, _, _ in rows if not label.startswith("h2load")]
    top = 1.15 * max(grpc or [1.0])
    bar_h, gap, left, width = 22, 8, 330, 420
    height = 60 + len(rows) * (bar_h + gap) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 200}" height="{height}" '
             'font-family="sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="10" y="22" font-size="15" font-weight="bold">Answers per second (closed loop); '
             f'p99 at {rate or 0:,.0f}/s open loop where measured</text>']
    y = 45
    for row, label, what, tls in rows:
        r = closed[label]
        v = r["throughput_rps"]
        cut = v > top
        w = width if cut else max(1, int(width * v / top))
        color = "#c0392b" if label.startswith("huitong") else "#7f8c8d" if row.startswith("5") else "#2c7fb8"
        name = f"({row}) {label}"
        parts.append(f'<text x="{left - 8}" y="{y + bar_h - 7}" text-anchor="end">{html.escape(name)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w}" height="{bar_h}" fill="{color}"/>')
        if cut:
            x = left + width - 30
            parts.append(f'<rect x="{x}" y="{y - 2}" width="6" height="{bar_h + 4}" fill="white"/>')
        extra = ""
        if opened.get(label):
            extra = f'  p99 {opened[label]["latency_ms"]["p99"]:.2f} ms'
        parts.append(f'<text x="{left + w + 6}" y="{y + bar_h - 7}">{v:,.0f}/s{html.escape(extra)}</text>')
        y += bar_h + gap
    parts.append(f'<text x="10" y="{y + 18}" fill="#555">blue: baselines (direct, nginx); red: Huitong '
                 'broker; grey: static HTTP/2 server (the limit); a cut bar is off the scale</text>')
    parts.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")


def main(argv):
    if len(argv) >= 2 and argv[1] == "h2load" and len(argv) == 11:
        h2load(*argv[2:])
    elif len(argv) >= 4 and argv[1] == "half-min":
        half_min(argv[2], argv[3:])
    elif len(argv) == 5 and argv[1] == "stages":
        stages(*argv[2:])
    elif len(argv) in (8, 9) and argv[1] == "report":
        report(*argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
