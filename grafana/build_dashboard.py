"""Builds grafana/relaywatch.json (run: python3 grafana/build_dashboard.py). The JSON is generated so that
panel ids, grid positions and the shared variables stay consistent; tests check the output is current."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relaywatch.model import Verdict

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'instance=~"$instance", target=~"$target"'
# Least severe first, so "higher is worse" on a state timeline; words and colours come from the enum.
VERDICT_CODES = [str(v) for v in reversed(Verdict)]
COLOURS = {str(v): v.colour for v in Verdict}

# One number per verdict, so a state timeline can colour it: max over the state set of (is current) * code.
VERDICT_EXPR = (
    "max by (instance, target, address) ("
    + " or ".join(f'relaywatch_verdict{{{SEL}, verdict="{v}"}} * {i}' for i, v in enumerate(VERDICT_CODES))
    + ")"
)


def target(
    expr: str, legend: str = "", instant: bool = False, fmt: str = "time_series", ref: str = "A"
) -> dict:
    t: dict[str, Any] = {"datasource": DS, "expr": expr, "refId": ref, "legendFormat": legend, "format": fmt}
    if instant:
        t["instant"], t["range"] = True, False
    return t


def panel(kind: str, title: str, description: str, targets: list[dict], w: int, h: int, **extra: Any) -> dict:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "gridPos": {"w": w, "h": h},
        **extra,
    }


def hosts_with(title: str, description: str, condition: str) -> dict:
    """A stat of how many hosts meet `condition` now: green at 0, red from 1."""
    return panel(
        "stat",
        title,
        description,
        [target(f"count(count by (instance) ({condition})) or vector(0)", instant=True)],
        6,
        4,
        fieldConfig={
            "defaults": {
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
                }
            },
            "overrides": [],
        },
        options={"colorMode": "background", "reduceOptions": {"calcs": ["lastNotNull"]}},
    )


def merged_table(
    title: str, description: str, exprs: list[str], w: int, columns: dict[str, str | None]
) -> dict:
    """Instant queries joined into one row per series; `columns`: rename to a title, or None to hide."""
    refs = [chr(ord("A") + i) for i in range(len(exprs))]
    hide = {"Time": True} | {k: True for k, v in columns.items() if v is None}
    rename = {k: v for k, v in columns.items() if v is not None}
    options: dict[str, Any] = {"excludeByName": hide} | ({"renameByName": rename} if rename else {})
    return panel(
        "table",
        title,
        description,
        [target(e, instant=True, fmt="table", ref=r) for e, r in zip(exprs, refs, strict=True)],
        w,
        8,
        transformations=[{"id": "merge", "options": {}}, {"id": "organize", "options": options}],
    )


def verdict_mappings() -> list[dict]:
    return [
        {
            "type": "value",
            "options": {
                str(i): {"text": v, "color": COLOURS[v], "index": i} for i, v in enumerate(VERDICT_CODES)
            },
        }
    ]


def fleet_bars(title: str, description: str, record: str, by: str) -> dict:
    """A bar per group of a fleet recording rule (packaging/prometheus/relaywatch-recording.yml): a few
    series whatever the number of hosts, so the panel stays cheap at 100,000 hosts."""
    return panel(
        "bargauge",
        title,
        description,
        [target(record, f"{{{{{by}}}}}", instant=True)],
        8,
        6,
        options={"displayMode": "basic", "orientation": "horizontal"},
    )


FLEET = [
    fleet_bars(
        "Fleet: hosts intercepted by product",
        "Hosts with at least one intercepted relay, by the product named (recording rule).",
        "relaywatch:hosts_intercepted:count_by_product",
        "product",
    ),
    fleet_bars(
        "Fleet: hosts intercepted by site",
        "Hosts with at least one intercepted relay, by the site label of the inventory (recording rule).",
        "relaywatch:hosts_intercepted:count_by_site",
        "site",
    ),
    fleet_bars(
        "Fleet: hosts by verdict",
        "Hosts with at least one target in each verdict (recording rule); a host may count in several.",
        "relaywatch:hosts:count_by_verdict",
        "verdict",
    ),
]

PANELS = [
    hosts_with(
        "Hosts intercepted now",
        "Agents whose path to any relay is re-signed right now.",
        "relaywatch_interception_detected == 1",
    ),
    hosts_with(
        "Hosts with STARTTLS stripped",
        "Agents that see STARTTLS hidden or refused.",
        'relaywatch_verdict{verdict="starttls_stripped"} == 1',
    ),
    panel(
        "bargauge",
        "Interceptions by product",
        "Which products intercept, counted over hosts and targets.",
        [target("count by (product) (relaywatch_interceptor_info)", "{{product}}", instant=True)],
        12,
        4,
        options={"displayMode": "basic", "orientation": "horizontal"},
    ),
    panel(
        "state-timeline",
        "Verdict over time",
        "Each host and target's verdict; red: intercepted or stripped.",
        [target(VERDICT_EXPR, "{{instance}} {{target}} {{address}}")],
        24,
        8,
        fieldConfig={
            "defaults": {"mappings": verdict_mappings(), "color": {"mode": "thresholds"}},
            "overrides": [],
        },
        options={"showValue": "never", "mergeValues": True},
    ),
    merged_table(
        "STARTTLS and TLS per target",
        "STARTTLS state and negotiated TLS version of the last probe.",
        [f"relaywatch_starttls_state{{{SEL}}} == 1", f"relaywatch_tls_version_info{{{SEL}}}"],
        12,
        {"Value #A": None, "Value #B": None, "__name__": None},
    ),
    panel(
        "table",
        "Chain presented",
        "The certificates of the last probe, leaf first; expected=false is foreign.",
        [target(f"relaywatch_chain_certificate_info{{{SEL}}}", instant=True, fmt="table")],
        12,
        8,
        transformations=[
            {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}}}
        ],
        fieldConfig={
            "defaults": {},
            "overrides": [
                {
                    "matcher": {"id": "byName", "options": "expected"},
                    "properties": [
                        {
                            "id": "mappings",
                            "value": [
                                {
                                    "type": "value",
                                    "options": {
                                        "false": {"color": "red", "index": 0},
                                        "true": {"color": "green", "index": 1},
                                    },
                                }
                            ],
                        },
                        {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                    ],
                }
            ],
        },
    ),
    panel(
        "bargauge",
        "Leaf certificate expiry",
        "Days until the presented leaf expires.",
        [
            target(
                f'(relaywatch_certificate_not_after_timestamp_seconds{{{SEL}, position="0"}}'
                " - time()) / 86400",
                "{{instance}} {{target}}",
                instant=True,
            )
        ],
        12,
        8,
        fieldConfig={
            "defaults": {
                "unit": "d",
                "thresholds": {
                    "mode": "absolute",
                    "steps": [
                        {"color": "red", "value": None},
                        {"color": "orange", "value": 14},
                        {"color": "green", "value": 30},
                    ],
                },
            },
            "overrides": [],
        },
        options={"displayMode": "gradient", "orientation": "horizontal"},
    ),
    panel(
        "timeseries",
        "Probe duration",
        "90th percentile of the probes' total duration per host over 5 minutes (each phase per target: "
        "relaywatch_probe_duration_seconds with `metrics: {detail: true}` in the agent's config).",
        [
            target(
                "histogram_quantile(0.9, sum by (instance, le) "
                '(rate(relaywatch_host_probe_duration_seconds_bucket{instance=~"$instance"}[5m])))',
                "{{instance}}",
            )
        ],
        12,
        8,
        fieldConfig={"defaults": {"unit": "s", "custom": {"stacking": {"mode": "normal"}}}, "overrides": []},
    ),
    merged_table(
        "Path: where the session ends",
        "1 when the mail port answers before the destination (a transparent proxy or intercepting "
        "firewall); the hops are on the agent's detail page, and here with `metrics: {detail: true}`.",
        [f"relaywatch_path_middlebox_detected{{{SEL}}}"],
        24,
        {"Value": "middlebox"},
    ),
    *FLEET,
    merged_table(
        "DANE per gateway address",
        "DANE state of gateway targets (port 25, mx:): verified, mismatch (interception), bogus (DNSSEC "
        "validation fails) or unavailable (no secure TLSA records).",
        [f"relaywatch_dane_status{{{SEL}}} == 1"],
        12,
        {"Value": None, "__name__": None},
    ),
]


def layout(panels: list[dict]) -> list[dict]:
    """Left to right, wrapping at 24 columns: ids and positions follow from the order above."""
    x = y = row_h = 0
    out = []
    for i, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        out.append({**p, "id": i, "gridPos": {"x": x, "y": y, "w": w, "h": h}})
        x, row_h = x + w, max(row_h, h)
    return out


def variable(name: str, label: str, query: str) -> dict:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {},
        "query": {"query": query, "refId": name},
        "definition": query,
        "sort": 1,
    }


def dashboard() -> dict:
    return {
        "uid": "relaywatch",
        "title": "relaywatch: mail relay TLS",
        "description": "TLS interception, STARTTLS stripping and downgrades on the path to the mail relays.",
        "tags": ["relaywatch", "tls", "smtp"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                variable("instance", "Host", "label_values(relaywatch_build_info, instance)"),
                variable(
                    "target",
                    "Target",
                    'label_values(relaywatch_probe_success{instance=~"$instance"}, target)',
                ),
            ]
        },
        "annotations": {"list": []},
        "panels": layout(PANELS),
    }


def main() -> None:
    out = Path(__file__).with_name("relaywatch.json")
    out.write_text(json.dumps(dashboard(), indent=2) + "\n")


if __name__ == "__main__":
    main()
