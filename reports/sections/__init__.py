"""The registry of report sections, in report order.

A section draws on one kind of data; when that data is missing its builder returns None
and the report carries a one-line note instead. The quality suite and the CI
history plug in here like the rest.
"""

from __future__ import annotations

from reports.context import Section
from reports.sections.ablations import build_chunks, build_hashes, build_reversible
from reports.sections.analytic import build_analytic
from reports.sections.ci_history import build_history
from reports.sections.decode import build_decode
from reports.sections.efficiency import build_efficiency
from reports.sections.memory import build_memory
from reports.sections.peers import build_peers
from reports.sections.quality import build_quality
from reports.sections.scale import build_scale
from reports.sections.time import build_time

SECTIONS: tuple[Section, ...] = (
    Section("memory", "Peak memory against length", "memory-suite results", build_memory),
    Section("time", "Time against length (Reformer Fig. 5)", "time-suite results", build_time),
    Section(
        "efficiency",
        "Efficiency: MFU beside time",
        "time or peers rows with an MFU",
        build_efficiency,
        draws=("time", "peers"),
    ),
    Section(
        "hashes",
        "Hash rounds",
        "hashes-suite or duplication-task results",
        build_hashes,
        draws=("hashes", "quality"),
    ),
    Section("chunks", "Chunk size", "chunks-suite results", build_chunks),
    Section("reversible", "Reversibility and depth", "reversible-suite results", build_reversible),
    Section("peers", "Peer implementations", "peers-suite results", build_peers),
    Section("scale", "Scale: the longest sequence run", "scale-suite results", build_scale),
    Section(
        "decode",
        "Generation: latency and memory against context",
        "decode-suite results",
        build_decode,
    ),
    Section(
        "quality",
        "Quality: duplication task (Table 2) and byte-level LM",
        "quality-suite results",
        build_quality,
    ),
    Section(
        "ci_history", "CI performance history", "rows in results/ci/history.jsonl", build_history
    ),
    Section(
        "analytic",
        "Table 3 memory model against measured peaks",
        "ok memory, reversible or scale points with a full config",
        build_analytic,
        draws=("memory", "reversible", "scale"),
    ),
)
