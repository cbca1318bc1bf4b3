"""``make bench``: every measurement beside its baseline, in one run on this machine, then one ``BENCH {json}`` line.

Ratios only; nothing here asserts a timing.  Goals: triggerer CPU and RSS ratios <= 0.5, latency p99 - delay
<= 1 s, parse and import ratios against the Amazon provider's EC2CreateInstanceOperator and GlueJobOperator <= 1.0
(medians of rounds; the ratio against EmptyOperator is informational), creates per build = 1, pipeline executions
per run = 1, excess gets <= 2, emulator >= 500 GetImage/s; event-driven waits against polling at the same delay:
GetImage per build <= 2.1, detection latency p99 <= 2 s, CPU ratio <= 1.0.  Those run 300 waits by default, not
1,000: moto server, which stands in for EventBridge and SQS, falls behind at 1,000 builds (see docs/benchmarks.md); set
BENCH_EVENT_WAITS to try more.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import emulator_speed
import event_waits
import operator_faults
import parse_import
import pipeline_faults
import triggerer

TRIGGERS = int(os.environ.get("BENCH_TRIGGERS", "1000"))
DELAY = float(os.environ.get("BENCH_DELAY", "5"))
EVENT_WAITS = int(os.environ.get("BENCH_EVENT_WAITS", "300"))
EVENT_DELAY = float(os.environ.get("BENCH_EVENT_DELAY", "30"))


def main() -> int:
    lines: list[str] = []

    trig = triggerer.measure(TRIGGERS, DELAY)
    lines += triggerer.report(trig, TRIGGERS, DELAY)
    waits = event_waits.measure(EVENT_WAITS, EVENT_DELAY)
    lines += event_waits.report(waits)
    parse = parse_import.measure()
    lines += parse_import.report(parse)
    operator = operator_faults.measure()
    lines += operator_faults.report(operator)
    pipeline = pipeline_faults.measure()
    lines += pipeline_faults.report(pipeline)
    emulator = emulator_speed.measure()
    lines += emulator_speed.report(emulator)

    print("\n".join(lines))
    bench = {
        "triggerer_cpu_ratio": round(trig["ours"]["cpu_s"] / trig["baseline"]["cpu_s"], 3),
        "triggerer_rss_ratio": round(trig["ours"]["rss_growth_mib"] / trig["baseline"]["rss_growth_mib"], 3),
        "triggerer_latency_p99_over_delay_s": round(trig["ours"]["latency_p99_s"] - DELAY, 3),
        "parse_ratio_vs_ec2": round(parse["parse_ratio_vs_ec2"]["median"], 3),
        "parse_ratio_vs_glue": round(parse["parse_ratio_vs_glue"]["median"], 3),
        "import_ratio_vs_ec2": round(parse["import_ratio_vs_ec2"]["median"], 3),
        "import_ratio_vs_glue": round(parse["import_ratio_vs_glue"]["median"], 3),
        "file_ratio_vs_ec2": round(parse["file_ratio_vs_ec2"]["median"], 3),
        "parse_ratio_vs_empty": round(parse["parse_ratio_vs_empty"]["median"], 3),
        "creates_per_build": round(operator["creates_per_build"], 3),
        "pipeline_executions_per_run": round(pipeline["pipeline_executions_per_run"], 3),
        "gets_per_build_excess": round(operator["gets_per_build_excess"], 3),
        "emulator_get_per_s": round(emulator["get_per_s"], 1),
        "event_waits": EVENT_WAITS,
        "event_gets_per_build": round(waits["events"]["gets_per_build"], 3),
        "event_latency_p99_s": round(waits["events"]["latency_p99_s"], 3),
        "event_cpu_ratio": round(waits["events"]["cpu_s"] / waits["polling"]["cpu_s"], 3),
    }
    print("BENCH " + json.dumps(bench))
    return 0


if __name__ == "__main__":
    sys.exit(main())
