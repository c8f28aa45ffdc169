#!/usr/bin/env python3
"""Turn bench/run.sh's raw results into docs/benchmarks.md.

    report.py RESULTS_DIR OUT_MD

Reads RESULTS_DIR/meta.tsv, the hyperfine JSON exports (*.json), the load samples (*.load), the
hyperfine command lines (*.cmd) and the profiling outputs; writes OUT_MD. bench/analysis.md, if
present, is included as the hand-written analysis of the unmet targets.
"""

import json
import math
import os
import re
import sys

RES, OUT = sys.argv[1], sys.argv[2]
BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)

meta = {}
partial = []  # cases re-run on their own after the full run
with open(os.path.join(RES, "meta.tsv")) as f:
    for line in f:
        k, _, v = line.rstrip("\n").partition("\t")
        if k == "partial":
            partial.append(v)
        meta[k] = v


def load(name):
    p = os.path.join(RES, name + ".json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)["results"]


def ms(x):
    """Seconds → a readable duration."""
    v = x * 1000
    if v >= 10000:
        return f"{x:.2f} s"
    if v >= 100:
        return f"{v:.0f} ms"
    if v >= 10:
        return f"{v:.1f} ms"
    return f"{v:.2f} ms" if v >= 1 else f"{v:.3f} ms"


def find(results, prefix):
    for r in results or []:
        if r["command"].startswith(prefix):
            return r
    return None


def load_note(name):
    p = os.path.join(RES, name + ".load")
    if not os.path.exists(p):
        return ""
    rows = [l.split() for l in open(p) if len(l.split()) in (4, 5)]
    if not rows:
        return ""
    l1 = [float(r[1]) for r in rows]
    rq = [int(r[2]) for r in rows]
    rustc = [int(r[3]) for r in rows]
    note = (f"Load while this ran ({len(rows)} s sampled): 1-min load average {l1[0]:.2f} → {l1[-1]:.2f}, "
            f"runnable tasks mean {sum(rq) / len(rq):.1f} / max {max(rq)} (the benchmark itself counts 1–2)")
    if all(len(r) == 5 for r in rows):
        fr = [int(r[4]) for r in rows]
        busy = sum(1 for x in fr if x > 0)
        if busy:
            note += (f"; **other sessions had running processes in {busy} of {len(rows)} samples "
                     f"(mean {sum(fr) / len(fr):.1f}, max {max(fr)})**")
        else:
            note += "; no other session's process was seen running"
    if max(rustc) > 0:
        busy = sum(1 for r in rustc if r > 0)
        note += (f"; **rustc (other engineers' builds) running in {busy} of {len(rows)} samples "
                 f"(up to {max(rustc)} at once)**")
    else:
        note += "; no rustc running"
    return note + "."


def table(name, base=0, extra=None):
    """Markdown table of one hyperfine invocation; ratios against command `base`."""
    rs = load(name)
    if not rs:
        return "_not run_\n"
    b = rs[base]
    head = "| command | mean ± σ | min | median | max | mean vs first | runs |"
    sep = "|---|---:|---:|---:|---:|---:|---:|"
    if extra:
        head += f" {extra[0]} |"
        sep += "---:|"
    lines = [head, sep]
    for i, r in enumerate(rs):
        ratio = "1.00" if i == base else f"{r['mean'] / b['mean']:.2f}× ({'+' if r['mean'] >= b['mean'] else '−'}{ms(abs(r['mean'] - b['mean']))})"
        label = r["command"].replace("|", "\\|")
        row = (f"| {label} | {ms(r['mean'])} ± {ms(r['stddev'] or 0)} | {ms(r['min'])} | "
               f"{ms(r['median'])} | {ms(r['max'])} | {ratio} | {len(r['times'])} |")
        if extra:
            row += f" {extra[1](r)} |"
        lines.append(row)
    out = "\n".join(lines) + "\n"
    note = load_note(name)
    if note:
        out += "\n" + note + "\n"
    return out


def cmdline(name):
    p = os.path.join(RES, name + ".cmd")
    return open(p).read().strip() if os.path.exists(p) else None


def iqr(r):
    t = sorted(r["times"])
    return t[(3 * len(t)) // 4] - t[len(t) // 4]


def noise(a, b):
    """Describe whether the difference between two results is larger than their spread. σ is
    inflated by outliers on a busy machine, so when the means are within σ, the medians are
    compared with the interquartile ranges too."""
    d = abs(a["mean"] - b["mean"])
    s = max(a["stddev"] or 0, b["stddev"] or 0)
    if d > s:
        return "larger than σ"
    dm = abs(a["median"] - b["median"])
    if dm > max(iqr(a), iqr(b)):
        return (f"means within σ (outliers), but the medians differ by {ms(dm)}, more than either "
                f"interquartile range ({ms(iqr(a))}, {ms(iqr(b))}): significant")
    return "**within σ (not significant)**"


targets = []  # (target, measured, noise, status)


def verdict(check):
    """Judge a target on the means; say so when the medians would judge otherwise (noise)."""
    on_mean, on_median = check("mean"), check("median")
    v = "**met**" if on_mean else "**not met**"
    if on_mean != on_median:
        v += f" (on medians: {'met' if on_median else 'not met'})"
    return v


def status(ok):
    return "**met**" if ok else "**not met**"


def spread(*rs):
    return ", ".join(f"σ {ms(r['stddev'] or 0)}, median {ms(r['median'])}" for r in rs)


# ----------------------------------------------------------------------------------------- 1
sizes = [("hello", "`echo hello`"), ("65536", "64 KiB"), ("1048576", "1 MiB"), ("16777216", "16 MiB")]
hits = {s: load(f"hit_{s}") for s, _ in sizes}
for s, label in sizes[:2]:
    rs = hits[s]
    if not rs:
        continue
    p, c = rs[0], find(rs, "cachectl")
    targets.append((f"hit overhead ≤ 0.3 ms over the plain command ({label})",
                    f"+{ms(c['mean'] - p['mean'])} (means), +{ms(c['median'] - p['median'])} (medians), "
                    f"+{ms(c['min'] - p['min'])} (mins)",
                    f"plain: {spread(p)}; cachectl: {spread(c)}",
                    verdict(lambda st: c[st] - p[st] <= 0.0003)))
for s, label in sizes:
    rs = hits[s]
    if not rs:
        continue
    k, c = find(rs, "bkt"), find(rs, "cachectl")
    targets.append((f"cachectl hit no slower than bkt's hit ({label})",
                    f"cachectl {ms(c['mean'])} vs bkt {ms(k['mean'])} ({c['mean'] / k['mean']:.2f}×); "
                    f"medians {ms(c['median'])} vs {ms(k['median'])}",
                    noise(c, k), verdict(lambda st: c[st] <= k[st])))
if hits["1048576"]:
    rs = hits["1048576"]
    p, c = rs[0], find(rs, "cachectl")
    targets.append(("1 MiB stdout hit ≤ 1.2× plain",
                    f"{c['mean'] / p['mean']:.2f}× ({ms(c['mean'])} vs {ms(p['mean'])}); "
                    f"medians {c['median'] / p['median']:.2f}×",
                    f"plain: {spread(p)}; cachectl: {spread(c)}",
                    verdict(lambda st: c[st] <= 1.2 * p[st])))
one = load("compile_one")
if one:
    cc, cl = find(one, "ccache"), find(one, "cachectl")
    targets.append(("compile hit ≥ 2× faster than a ccache direct-mode hit",
                    f"{cc['mean'] / cl['mean']:.2f}× ({ms(cl['mean'])} vs ccache {ms(cc['mean'])}); "
                    f"medians {cc['median'] / cl['median']:.2f}×",
                    noise(cc, cl), verdict(lambda st: cc[st] >= 2 * cl[st])))
    ccd, cld = find(one, "ccache gcc -c (direct hit, a.o"), find(one, "cachectl run ... gcc -c (hit, a.o")
    if ccd and cld:
        targets.append(("the same, a.o deleted before each run",
                        f"{ccd['mean'] / cld['mean']:.2f}× ({ms(cld['mean'])} vs ccache {ms(ccd['mean'])}); "
                        f"medians {ccd['median'] / cld['median']:.2f}×",
                        noise(ccd, cld), verdict(lambda st: ccd[st] >= 2 * cld[st])))
GIB = int(meta.get("big_bytes", 1 << 30))  # the big file's size (1 GiB unless BENCH_BIG)
BIGLABEL = "1 GiB" if GIB == 1 << 30 else f"{GIB / 1048576:.0f} MiB"
hb = load("hash_big")
if hb:
    cold = find(hb, "cachectl cold key, --no-store")
    targets.append((f"cold hashing ≥ 1 GB/s on 2 cores ({BIGLABEL} file, first key)",
                    f"{GIB / cold['mean'] / 1e9:.2f} GB/s ({ms(cold['mean'])} for {BIGLABEL})",
                    spread(cold), verdict(lambda st: GIB / cold[st] >= 1e9)))
hs = load("hash_small")
nsmall = int(meta.get("small_files", "100000").split()[0]) if meta.get("small_files") else 100000
if hs:
    warm = find(hs, "cachectl warm")
    targets.append((f"{nsmall:,} unchanged files re-keyed < 0.3 s",
                    f"{ms(warm['mean'])} ({nsmall / warm['mean']:,.0f} files/s; a hit, record included)",
                    spread(warm), verdict(lambda st: warm[st] < 0.3)))
sm = load("scale_mgmt")
nent = meta.get("scale_entries", "?")
if sm:
    for prefix, limit, label in [("stats", 0.1, "stats < 100 ms"), ("gc --dry-run", 2.0, "gc < 2 s"),
                                 ("invalidate", 0.5, "invalidate < 0.5 s")]:
        r = find(sm, prefix)
        targets.append((f"{int(nent):,} entries: {label}" if nent.isdigit() else label,
                        f"{ms(r['mean'])}", spread(r), verdict(lambda st: r[st] < limit)))
sh = load("scale_hit")
if sh:
    e, b = sh[0], sh[1]
    targets.append(("hit latency on the big cache within 10% of an empty cache's",
                    f"{b['mean'] / e['mean']:.2f}× ({ms(b['mean'])} vs {ms(e['mean'])}); "
                    f"medians {b['median'] / e['median']:.2f}×",
                    noise(b, e), verdict(lambda st: b[st] <= 1.10 * e[st])))
for k, label in [("rss_miss_kb", "store (miss)"), ("rss_hit_kb", "restore (hit)")]:
    if meta.get(k):
        kb = int(meta[k])
        targets.append((f"peak RSS < 64 MiB, {BIGLABEL} output {label}", f"{kb / 1024:.1f} MiB", "one run",
                        status(kb < 64 * 1024)))

# ----------------------------------------------------------------------------------------- doc
o = []
w = o.append
w("# Benchmarks\n")
w("Generated by [`bench/run.sh`](../bench/run.sh) (tables, targets, profile) from the raw results in "
  "[`bench/results/`](../bench/results/); the analysis section is [`bench/analysis.md`](../bench/analysis.md), "
  "written by hand for the run below. Re-run with:\n")
w("```sh\n" + meta.get("invocation", "bench/run.sh") + "\n```\n")
w("Every comparison is one hyperfine invocation, its commands side by side (`-N`: no shell, unless a "
  "pipe needs one), with warmups. Each tool has a private cache directory in a temp dir "
  "(`CACHECTL_DIR`/`--dir`, `bkt --cache-dir`, `CCACHE_DIR`), and no user configuration is read. "
  "Commands' stdout goes to `/dev/null` (hyperfine's default) unless a row says otherwise. "
  "Times are wall-clock; \"mean vs first\" compares each mean with the first row's.\n")
w("## Machine and run\n")
w("| | |\n|---|---|")
for k, label in [("date", "date (UTC)"), ("finished", "finished (UTC)"), ("cpu", "CPU"), ("nproc", "nproc"),
                 ("mem", "memory"), ("kernel", "kernel"), ("fs", "scratch filesystem"), ("rustc", "rustc"),
                 ("cachectl", "cachectl"), ("cachectl_bin", "binary"), ("build_secs", "release build (s)"),
                 ("hyperfine", "hyperfine"), ("bkt", "bkt"), ("ccache", "ccache"), ("gcc", "gcc"),
                 ("make", "make"), ("b3sum", "b3sum"), ("load_start", "load average at start (1/5/15 min)"),
                 ("load_end", "load average at end")]:
    if meta.get(k):
        w(f"| {label} | {meta[k]} |")
w("")
for p in partial:
    w(f"- **Re-run:** {p}.")
if partial:
    w("")
w("**Noise.** This machine has 2 cores and is shared with other engineers' builds (cargo/rustc); "
  "under each table is what the load sampler saw while it ran. Differences smaller than σ are "
  "marked as not significant; with a busy neighbour, σ and the max grow and the min is the most "
  "stable figure. Compare rows within one table (same minutes, same load), not across tables.\n")
if os.path.exists(os.path.join(RES, "top-start.txt")):
    w("<details><summary>top at start</summary>\n\n```\n" + open(os.path.join(RES, "top-start.txt")).read().strip()
      + "\n```\n</details>\n")

w("## Summary: targets\n")
w("| target | measured | noise | status |\n|---|---|---|---|")
for t in targets:
    w("| " + " | ".join(t) + " |")
met = sum(1 for t in targets if "not met" not in t[3])
w(f"\n{met} of {len(targets)} targets met. What blocks the others: [analysis](#analysis-what-blocks-the-unmet-targets).\n")

w("## 1. Hit latency\n")
w("`plain` is the command itself; `bkt --ttl=1h --cache-dir=… -- CMD` and `cachectl run -- CMD` are hits "
  "(both caches primed and checked first). Outputs come from `head -c N` of a pre-generated file of "
  "base64 random text. cachectl keys more than bkt does here: the executable's content (through "
  "its stat cache) and the working directory; bkt keys argv only (no `--cwd`), and neither verifies "
  "anything beyond that on a hit except cachectl's checksums of the record and blobs.\n")
for s, label in sizes:
    w(f"### {label}\n")
    w(table(f"hit_{s}"))
w("### 1 MiB through a pipe (`sh -c '… | cat > /dev/null'`)\n")
w("Here every byte is really copied to a reader, as in `cachectl run -- cmd | grep …`. Each row "
  "includes the same `sh` and `cat` start-up (no shell correction), so compare differences.\n")
w(table("hit_1048576_pipe"))

w("## 2. Compile wrapping\n")
if meta.get("c_one_lines"):
    w(f"One file: {meta['c_one_lines']}; `gcc -c a.c -o a.o` plain, `ccache gcc -c a.c -o a.o` "
      f"(direct mode, hit checked with `ccache --print-stats`), and "
      f"`cachectl run -i a.c -i '*.h' -o a.o -- gcc -c a.c -o a.o` (hit, restores `a.o`).\n")
w(table("compile_one"))
if meta.get("ccache_stats_one"):
    w(f"ccache counters after the invocation: `{meta['ccache_stats_one'].strip()}`.\n")
w("### 50-file project, `make -j2`\n")
if meta.get("c_proj"):
    w(f"{meta['c_proj']}. The Makefile's compile rule is `gcc $(CFLAGS) -c $< -o $@`, "
      "`ccache gcc …`, or `cachectl run -i $< -i 'include/*.h' -o $@ -- gcc …`; the link is never "
      "wrapped. Each timed run starts from `make clean`; cold runs also delete the tool's cache.\n")
w("Cold (empty caches):\n")
w(table("make_cold"))
w("Warm (caches primed, objects deleted):\n")
w(table("make_warm"))
if meta.get("ccache_stats_warm"):
    w(f"ccache counters over the warm invocation: `{meta['ccache_stats_warm'].strip()}`.\n")

w("## 3. Input hashing\n")
w("`cachectl run [--no-store] -i PATH -- true`. *Cold* is the first key on a fresh cache directory "
  "(no stat cache; `--no-store` = key + lookup only, `+ store` also stores the entry and its stat "
  "cache); *warm* is a hit with the stat cache filled and nothing changed. The data were just "
  "written, so they are in the page cache: this measures hashing and stat work, not the disk. "
  "b3sum is the reference for the same bytes (multi-threaded, mmap for the big file).\n")


def gbps(r):
    if r["command"].startswith("cachectl warm"):
        return "(nothing hashed)"
    return f"{GIB / r['mean'] / 1e9:.2f} GB/s"


w(f"### {BIGLABEL} in one file\n")
w(table("hash_big", extra=(f"throughput ({BIGLABEL} / mean)", gbps)))
w(f"### {meta.get('small_files', 'small files')}\n")
if meta.get("record_bytes_small"):
    w(f"The stored record for this command is {int(meta['record_bytes_small']):,} bytes (it holds every input's "
      f"path and digest as key components); its stat cache file is "
      f"{int(meta.get('statcache_bytes_small', 0)):,} bytes. A warm hit reads and verifies both.\n")
w(table("hash_small", extra=("files/s", lambda r: f"{nsmall / r['mean']:,.0f}")))

w(f"## 4. Large outputs ({BIGLABEL} file)\n")
w("`cachectl run -o big.bin -- sh -c 'head -c 1G /dev/urandom > big.bin'`: the miss runs it and stores "
  "`big.bin` in the CAS; the hit restores it after `rm big.bin` into a temp file, verified, then "
  "renamed. Random data does not compress; "
  + ("this blob was stored raw (its size is the content's plus the 48-byte header), so the hit "
     "verifies its content digest in one pass and then copies it. "
     if meta.get("blob_bytes_1g") and meta.get("big_output_bytes")
     and int(meta["blob_bytes_1g"]) == int(meta["big_output_bytes"]) + 48 else
     "zstd (level 3) stores it nearly as is; the hit checks the payload checksum, then decompresses "
     "while checking the content digest. ")
  + "`cp` of the same file is the reference for the restore.\n")
w(table("large_output"))
if meta.get("rss_miss_kb"):
    w(f"Peak RSS (`/usr/bin/time -v`, one run each; the maximum over cachectl and its children): "
      f"miss {int(meta['rss_miss_kb']) / 1024:.1f} MiB, hit {int(meta['rss_hit_kb']) / 1024:.1f} MiB "
      f"(target < 64 MiB). Stored blob: {int(meta.get('blob_bytes_1g', 0)):,} bytes.\n")

w("## 5. Scale\n")
if meta.get("scale_entries"):
    n = int(meta["scale_entries"])
    w(f"A cache of {n:,} entries, each made by a real `cachectl run -- echo N` (a miss that stores), "
      f"4 at a time with `xargs -P 4`: {float(meta['scale_gen_secs']):.0f} s "
      f"({n / float(meta['scale_gen_secs']):.0f} stores/s). Records on disk: {meta.get('scale_ac_records')}; "
      f"cache size {meta.get('scale_disk')}; journal before folding {int(meta['scale_journal_bytes']):,} bytes.")
    if meta.get("scale_fallback"):
        w(f" **Fallback:** {meta['scale_fallback']}.")
    w("\n")
    w(f"The first management command after those stores folds the whole journal into the index: "
      f"the first `cachectl stats` took {float(meta['scale_first_stats_secs']):.2f} s (one run, not in the "
      f"table; index afterwards {int(meta.get('scale_index_bytes', 0)):,} bytes). The table is the "
      f"steady state (journal already folded).\n")
w(table("scale_mgmt"))
w("Hit latency, `cachectl run -- echo hello`, on a cache holding only that entry and on the big cache:\n")
w(table("scale_hit"))

w("## 6. Hit-path profile\n")
w("Where a small hit's time goes. `--version` is the floor of any cachectl process (exec, dynamic "
  "loading, clap); the two `env` rows differ only by `exe_check` (`none` skips hashing/stat-caching "
  "the executable).\n")
w(table("prof_decompose"))


def read(name):
    p = os.path.join(RES, name)
    return open(p).read() if os.path.exists(p) else None


def strace_total(text):
    for line in text.splitlines():
        if line.strip().endswith("total"):
            parts = line.split()
            # % time, seconds, usecs/call?, calls, errors?, total
            nums = [p for p in parts[:-1]]
            return nums
    return None


def strace_calls(text):
    """syscall → calls from `strace -c`."""
    calls = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and re.match(r"^[0-9.]+$", parts[0]) and parts[-1] != "total":
            try:
                calls[parts[-1]] = int(parts[3])
            except ValueError:
                pass
    return calls


sh_hit, sh_echo, sh_1m = read("strace_hit_hello.txt"), read("strace_echo.txt"), read("strace_hit_1m.txt")
if sh_hit:
    c_hit, c_echo = strace_calls(sh_hit), strace_calls(sh_echo or "")
    w(f"**Syscalls** (`strace -f -c`): a hit of `echo hello` makes {sum(c_hit.values())} system calls; "
      f"`echo hello` itself makes {sum(c_echo.values())}. The most frequent in the hit: "
      + ", ".join(f"`{k}` {v}" for k, v in sorted(c_hit.items(), key=lambda kv: -kv[1])[:12]) + ".\n")
    w("<details><summary>strace -c of a hit (echo hello)</summary>\n\n```\n" + sh_hit.strip() + "\n```\n</details>\n")
    log = read("strace_hit_hello.log")
    if log:
        w("<details><summary>strace -tt -T of a hit (echo hello), full trace</summary>\n\n```\n" + log.strip() + "\n```\n</details>\n")
if sh_1m:
    w("<details><summary>strace -c of a hit (1 MiB stdout)</summary>\n\n```\n" + sh_1m.strip() + "\n```\n</details>\n")
for name, label in [("perf_hit_hello.txt", "cachectl hit (echo hello)"), ("perf_echo.txt", "echo hello"),
                    ("perf_hit_1m.txt", "cachectl hit (1 MiB stdout)"), ("perf_cat_1m.txt", "cat of the same 1 MiB")]:
    t = read(name)
    if t:
        keep = [l for l in t.splitlines() if l.strip() and not l.startswith("#") and "not supported" not in l]
        w(f"<details><summary>perf stat: {label}</summary>\n\n```\n" + "\n".join(keep) + "\n```\n</details>\n")
for p, label in [("hit_hello", "hit of echo hello"), ("hit_1m", "hit with 1 MiB stdout")]:
    t = read(f"callgrind_{p}_inclusive.txt")
    if t:
        tot = re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", t)
        total = f" ({tot.group(1)} instructions in total)" if tot else ""
        w(f"<details><summary>callgrind, inclusive, {label}{total}</summary>\n\n```\n" + t.strip()
          + "\n```\n</details>\n")
    t = read(f"callgrind_{p}_self.txt")
    if t:
        w(f"<details><summary>callgrind, self cost, {label}</summary>\n\n```\n" + t.strip() + "\n```\n</details>\n")

if load("static_hello"):
    w("## 7. Experiment: the same source linked statically\n")
    w("Not a target, a measurement for the analysis: the same revision built with "
      f"`{meta.get('static_flags', '')}` (glibc static, non-PIE: no dynamic loader, no relocations "
      "at start). Binaries: " + meta.get("static_bin", "") + ". Run on its own with `BENCH_CASES=7`, "
      "so its load differs from the tables above; compare within each table.\n")
    w(table("static_hello"))
    w(table("static_1m"))
    for name, label in [("static_perf_dyn.txt", "hit, as built"), ("static_perf_static.txt", "hit, static")]:
        t = read(name)
        if t:
            keep = [l for l in t.splitlines() if l.strip() and not l.startswith("#") and "not supported" not in l]
            w(f"<details><summary>perf stat: {label}</summary>\n\n```\n" + "\n".join(keep) + "\n```\n</details>\n")

sp = os.path.join(RES, "startup.md")
if os.path.exists(sp):
    w("## Start-up\n")
    w("The same hits through builds that differ only in how `cachectl` starts: written by "
      "[`bench/startup.sh`](../bench/startup.sh), its own run (so compare within its tables, not "
      "with the tables above). `before` is the last build linked without PIE and with its own "
      "entry point; `after` is the default build since issue 13 (a PIE, std's entry point); "
      "other rows are opt-in variants. [design.md](design.md#start-up) says what each costs and "
      "why the default is what it is. The tables above come from the revision named at the top, "
      "built the old way; until `bench/run.sh` is run again, scale their cachectl rows by these.\n")
    w(open(sp).read().strip() + "\n")

gp = os.path.join(RES, "gc_policy.md")
if os.path.exists(gp):
    w("## gc policy\n")
    w("What `gc --policy value` (the default) and `--policy lru` keep when the cache holds half "
      "of what the builds use: [`bench/gc_policy.rs`](../bench/gc_policy.rs) generates a "
      "project (300 compiles, 6 links, 20 test steps, 40 tool probes) and 60 CI builds on three "
      "branches that edit 3% of the sources each, and replays them through cachectl's own store, "
      "journal, index and gc (a miss stores an entry of the step's size; gc runs after every "
      "build with `--max-size` at half the working set). Time saved is the sum of the durations "
      "of the hits; the ceiling is the same trace with no limit. Its own run: "
      "`cargo run --release --example gc_policy -- --builds 60 --seeds 16,7,42 --out "
      "bench/results/gc_policy.md`, then `python3 bench/report.py bench/results docs/benchmarks.md`.\n")
    w(open(gp).read().strip() + "\n")
    w("`value` beats `lru` on every trace on both counts: 12.6-13.0 h saved against 8.9-10.2 h "
      "(+24-42%), and 78.8-82.8% hits against 64.4-72.4%, with 30-44% of the evictions. It is "
      "the default. Its first version (the figures of the previous run: 5-21 points *fewer* hits "
      "than `lru`) forgot an entry's uses when gc evicted it, so the 40 tool probes every build "
      "runs started again from one use each time they were stored and were evicted again at "
      "once; gc now remembers the uses of what it evicts (the `evicted` table) and a re-stored "
      "entry takes them back.\n")

tp = os.path.join(RES, "trace.md")
if os.path.exists(tp):
    w("## Tracing overhead (`--trace check`)\n")
    w(open(tp).read().strip() + "\n")

tap = os.path.join(RES, "trace_auto.md")
if os.path.exists(tap):
    w("## Tracing: `--trace auto`\n")
    w("Written by [`bench/trace.sh`](../bench/trace.sh) (its own run: `CARGO_TARGET_DIR=/work/target-bench "
      "bench/trace.sh`, then `python3 bench/report.py bench/results docs/benchmarks.md`). Tables in "
      "order: (1) the zstd library (30 C files, from the zstd-sys crate's sources) built with `make -j2`, "
      "every compile wrapped and forced to miss; (2) find + cat over 10 000 small files, forced misses; "
      "(3) the zero-configuration build `make -j2 CC=\"cachectl run --trace auto -- gcc\"` after "
      "`make clean`, warm, against ccache's warm rebuild; (4) one compile hit (zstd_compress.c) under "
      "`auto` (no `-o`: the object is an observed output), under `off` with `-o x.o`, and ccache's "
      "direct-mode hit; (5) `echo hello` hits.\n")
    w(open(tap).read().strip() + "\n")
    w("Against issue 14's targets, in this run: build misses under `auto` cost 1% more than under "
      "`off` (target at most 10%, aim 5%: met; each compile's stops are few next to its work); "
      "find + cat costs 5.9x (not met: every open is a ptrace stop, and on this VM a stop is mostly "
      "the wake-ups across the two vCPUs, see \"Tracing overhead\" above); the zero-configuration "
      "build is byte-identical to a plain one, its warm rebuild after `make clean` beats ccache's "
      "(met), and editing one header reran exactly the 20 compiles that include it (met); a traced "
      "compile hit is 0.51x of ccache's direct-mode hit (target at most 0.5x: on the line; more than "
      "half of its instructions (callgrind) decode and checksum the 35 KiB manifest, the next thing "
      "to make smaller); an `echo hello` hit under `auto` is within 0.1 ms of `off` (met).\n")

w("## Analysis: what blocks the unmet targets\n")
ap = os.path.join(BENCH, "analysis.md")
if os.path.exists(ap):
    w(open(ap).read().strip() + "\n")
else:
    w("_No analysis written yet (bench/analysis.md)._\n")

w("## Exact commands\n")
w("<details><summary>every hyperfine invocation, as run (paths are the run's temp dirs)</summary>\n")
for name in ["hit_hello", "hit_65536", "hit_1048576", "hit_16777216", "hit_1048576_pipe", "compile_one",
             "make_cold", "make_warm", "hash_big", "hash_small", "large_output", "scale_mgmt", "scale_hit",
             "prof_decompose", "static_hello", "static_1m"]:
    c = cmdline(name)
    if c:
        w(f"`{name}`:\n\n```sh\n{c}\n```\n")
w("</details>\n")

with open(OUT, "w") as f:
    f.write("\n".join(o).rstrip() + "\n")
