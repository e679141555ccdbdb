"""What the alert rules and the Grafana dashboard ask of the metrics, read offline.

No promtool here, so this is a small PromQL reader rather than a parser: a
tokenizer plus the few rules that tell a metric name from a function, an
aggregation, a keyword or a label name. From an expression it returns the
selectors (metric name + label matchers) and the grouping labels (``by``,
``without``, ``on``, ``ignoring``, ``group_left``, ``group_right``), and it
fails on unbalanced brackets or a character PromQL does not have. Grafana's
``$variables`` are allowed where Grafana puts them (in strings and ranges).

:func:`exposed_names` maps metric families (as ``prometheus_client`` defines
or a scrape shows them) to the series names a query may use: a counter
``x`` is queried as ``x_total``, a histogram ``h`` as ``h_bucket``,
``h_sum`` and ``h_count``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ALERTS_FILE = REPO / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS_FILE = REPO / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"

TARGET_LABELS = frozenset({"job", "instance"})
"""Labels Prometheus attaches to every scraped series."""
RELABELLED: dict[str, str] = {}
"""Rules/dashboard label -> the metric's own label where Prometheus renames one
(none: nightfold's own label is ``nightfold_job``, so it never clashes with ``job``)."""
PROMETHEUS_OWN = frozenset({"up"})
"""Series Prometheus makes itself for every target: in no scrape."""

AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
     "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)  # fmt: skip
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"}
)

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\[\]]*\])
  | (?P<number>0x[0-9a-fA-F]+
      |(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^=<>(){},@])
    """,
    re.VERBOSE,
)
_RANGE = re.compile(
    r"^\[\s*(?:\d+(?:ms|[smhdwy]))+(?:\s*:\s*(?:(?:\d+(?:ms|[smhdwy]))+)?)?\s*\]$"
    r"|^\[\s*\$\{?__(?:rate_interval|interval|range)(?:_ms|_s)?\}?\s*\]$"
)


class PromQLError(ValueError):
    pass


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[tuple[str, str, str], ...] = ()
    """(label, operator, value) with the value unquoted."""


@dataclass
class Usage:
    """What one expression reads."""

    selectors: list[Selector] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)

    @property
    def metrics(self) -> set[str]:
        return {s.metric for s in self.selectors}


def tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise PromQLError(f"unexpected {expr[pos : pos + 20]!r} at {pos} in {expr!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind == "range" and not _RANGE.match(m.group()):
            raise PromQLError(f"bad range {m.group()!r} in {expr!r}")
        if kind != "space":
            out.append((kind, m.group()))
        pos = m.end()
    return out


def _unquote(text: str) -> str:
    """A PromQL string literal's value (Go escapes; JSON's cover the ones used here)."""
    if text.startswith("`"):
        return text[1:-1]
    if text.startswith("'"):
        text = '"' + text[1:-1].replace("\\'", "'").replace('"', '\\"') + '"'
    value = json.loads(text)
    assert isinstance(value, str)
    return value


def _balanced(toks: list[tuple[str, str]], expr: str) -> None:
    pairs = {")": "(", "}": "{"}
    stack: list[str] = []
    for kind, text in toks:
        if kind != "op":
            continue
        if text in "({":
            stack.append(text)
        elif text in pairs and (not stack or stack.pop() != pairs[text]):
            raise PromQLError(f"unbalanced {text!r} in {expr!r}")
    if stack:
        raise PromQLError(f"unclosed {stack[-1]!r} in {expr!r}")


def read(expr: str) -> Usage:
    """The selectors and grouping labels of a PromQL expression."""
    toks = tokens(expr)
    _balanced(toks, expr)
    usage = Usage()
    i = 0

    def peek(j: int) -> tuple[str, str]:
        return toks[j] if j < len(toks) else ("end", "")

    def matchers(j: int) -> tuple[tuple[tuple[str, str, str], ...], int]:
        """Matchers of the ``{...}`` opening at ``j``; returns them and the index after ``}``."""
        found: list[tuple[str, str, str]] = []
        j += 1
        while peek(j) != ("op", "}"):
            (k1, label), (k2, op), (k3, value) = peek(j), peek(j + 1), peek(j + 2)
            if k1 != "ident" or k2 != "op" or op not in ("=", "!=", "=~", "!~") or k3 != "string":
                raise PromQLError(f"bad label matcher near {label!r} in {expr!r}")
            found.append((label, op, _unquote(value)))
            j += 3
            if peek(j) == ("op", ","):
                j += 1
        return tuple(found), j + 1

    while i < len(toks):
        kind, text = toks[i]
        if kind == "op" and text == "{":  # {__name__="x", ...}
            found, i = matchers(i)
            names = [v for label, op, v in found if label == "__name__" and op == "="]
            usage.selectors.append(Selector(names[0] if names else "", found))
            continue
        if kind != "ident":
            i += 1
            continue
        nxt = peek(i + 1)
        if text in GROUPING:
            if nxt == ("op", "("):
                j = i + 2
                while peek(j) != ("op", ")"):
                    k, label = peek(j)
                    if k == "ident":
                        usage.grouping.add(label)
                    elif (k, label) != ("op", ","):
                        raise PromQLError(f"bad label list after {text!r} in {expr!r}")
                    j += 1
                i = j + 1
            else:
                i += 1
            continue
        if text.lower() in KEYWORDS or nxt == ("op", "(") or text in AGGREGATIONS:
            i += 1  # a function, an aggregation or a keyword
            continue
        if nxt == ("op", "{"):
            found, i = matchers(i + 1)
            usage.selectors.append(Selector(text, found))
        else:
            usage.selectors.append(Selector(text))
            i += 1
    return usage


# -- metric families -------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    name: str
    type: str
    labels: frozenset[str] | None
    """Its label names; ``None`` when unknown (a scraped family with no sample yet)."""


_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "untyped": ("",),
    "unknown": ("",),
}


def exposed_names(families: Iterable[Family]) -> dict[str, Family]:
    """Series name a query may use -> its family."""
    out: dict[str, Family] = {}
    for fam in families:
        for suffix in _SUFFIXES[fam.type]:
            out[fam.name + suffix] = fam
    return out


def series_labels(name: str, fam: Family) -> frozenset[str] | None:
    """Labels a series of ``fam`` queried as ``name`` has in Prometheus, named as the
    rules name them (nightfold's ``job`` -> ``nightfold_job``); ``None`` if unknown."""
    if fam.labels is None:
        return None
    own = {next((k for k, v in RELABELLED.items() if v == label), label) for label in fam.labels}
    if name.endswith("_bucket") and fam.type == "histogram":
        own.add("le")
    if fam.type == "summary" and name == fam.name:
        own.add("quantile")
    return frozenset(own | TARGET_LABELS)


def code_families() -> list[Family]:
    """Every family ``nightfold.common.metrics`` defines, with its type and labels."""
    from prometheus_client.metrics import MetricWrapperBase

    from nightfold.common import metrics

    found = []
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            found.append(Family(value._name, value._type, frozenset(value._labelnames)))
    return found


def scraped_families(text: str) -> list[Family]:
    """The families of a /metrics page, with the label names their samples carry
    (unknown, ``None``, for a family without samples: a labelled metric never set)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for fam in text_string_to_metric_families(text):
        labels = {k for s in fam.samples for k in s.labels} - {"le", "quantile"}
        out.append(Family(fam.name, fam.type, frozenset(labels) if fam.samples else None))
    return out


# -- where the expressions are ---------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    where: str
    expr: str
    label: str | None = None
    """For a Grafana ``label_values(selector, label)`` variable: the label it lists."""


def alert_rules(path: Path = ALERTS_FILE) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alert_queries(path: Path = ALERTS_FILE) -> list[Query]:
    return [Query(f"alerts.yml:{rule['alert']}", rule["expr"]) for rule in alert_rules(path)]


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def walk_panels(panels: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<sel>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$")


def dashboard_queries(path: Path) -> list[Query]:
    doc = json.loads(path.read_text())
    out = []
    for panel in walk_panels(doc.get("panels", [])):
        for target in panel.get("targets", []):
            out.append(Query(f"{path.name}:{panel['title']}:{target['refId']}", target["expr"]))
    for var in doc.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = _LABEL_VALUES.match(query)
        if m is None:
            raise PromQLError(f"{path.name}: variable {var['name']}: not label_values(): {query}")
        out.append(Query(f"{path.name}:${var['name']}", m["sel"] or "", m["label"]))
    return out


def all_queries() -> list[Query]:
    return alert_queries() + [q for p in dashboard_files() for q in dashboard_queries(p)]


def used_metric_names(queries: Iterable[Query]) -> set[str]:
    return {s.metric for q in queries if q.expr for s in read(q.expr).selectors}


def problems(queries: Iterable[Query], families: Iterable[Family]) -> list[str]:
    """Every way ``queries`` ask for something ``families`` do not have: an unknown
    metric name (or the wrong suffix for its type), a label the series do not carry,
    a grouping label none of the expression's series carries."""
    exposed = exposed_names(families)
    out = []
    for q in queries:
        usage = read(q.expr) if q.expr else Usage()
        available: set[str] = set(TARGET_LABELS)
        unknown = False
        for sel in usage.selectors:
            if sel.metric in PROMETHEUS_OWN:
                continue
            fam = exposed.get(sel.metric)
            if fam is None:
                out.append(f"{q.where}: no metric {sel.metric!r}")
                continue
            labels = series_labels(sel.metric, fam)
            if labels is None:
                unknown = True
                continue
            available |= labels
            for label, _, _ in sel.matchers:
                if label not in labels:
                    out.append(f"{q.where}: {sel.metric} has no label {label!r}")
        if unknown:
            continue  # some series' labels are unknown: cannot judge the grouping
        for label in sorted(usage.grouping | ({q.label} if q.label else set())):
            if label not in available:
                out.append(f"{q.where}: no series of the expression has label {label!r}")
    return out
