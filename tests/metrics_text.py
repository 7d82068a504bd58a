"""Read Prometheus text with prometheus_client's own parser (what Prometheus would accept)."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


def families(text: str) -> dict[str, Metric]:
    """Family name -> family; raises ValueError on text that is not valid exposition format."""
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict[str, Metric], sample: str, **labels: str) -> float | None:
    """The value of the sample called `sample` with exactly these labels, or None."""
    for fam in fams.values():
        for s in fam.samples:
            if s.name == sample and s.labels == labels:
                return float(s.value)
    return None


def samples(fams: dict[str, Metric], family: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, float(s.value)) for s in fams[family].samples]


def scrape(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            body: bytes = resp.read()
            return body.decode()
    except (urllib.error.URLError, OSError):
        return None


def metric_names(family: str) -> set[str]:
    """The series names a family gives: histograms add _bucket/_count/_sum, counters _total."""
    return {family, f"{family}_bucket", f"{family}_count", f"{family}_sum", f"{family}_total"}
