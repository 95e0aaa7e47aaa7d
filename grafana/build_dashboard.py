"""Builds grafana/relaywatch.json (run: python3 grafana/build_dashboard.py) with grafana-foundation-sdk,
Grafana's own typed builders (pinned in the `test` extra), so the JSON follows Grafana's schema instead of
hand-written dictionaries; panel ids, grid positions and the shared variables stay consistent, and
tests check the output is current."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from grafana_foundation_sdk.builders import bargauge, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders.common import ReduceDataOptions, StackingConfig
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat
from relaywatch.model import Verdict

# The panel kinds used here (the SDK has one builder class per kind, no common base with their setters).
Panel: TypeAlias = stat.Panel | bargauge.Panel | statetimeline.Panel | table.Panel | timeseries.Panel
P = TypeVar("P", stat.Panel, bargauge.Panel, statetimeline.Panel, table.Panel, timeseries.Panel)

DS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
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
) -> Builder[Dataquery]:
    q = (
        prom.Dataquery()
        .datasource(DS)
        .expr(expr)
        .ref_id(ref)
        .legend_format(legend)
        .format(PromQueryFormat(fmt))
    )
    return q.instant() if instant else q


def panel(
    builder: Callable[[], P], title: str, description: str, targets: list[Builder[Dataquery]], w: int, h: int
) -> P:
    """The parts every panel has; the caller chains its kind's options on the result."""
    return builder().title(title).description(description).datasource(DS).targets(targets).span(w).height(h)


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    """Absolute steps; the first (value None) is the base colour."""
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=v, color=c) for v, c in steps])
    )


def last_value() -> ReduceDataOptions:
    """Grafana's own default reduction, spelled out: the SDK otherwise writes an empty list of calcs."""
    return ReduceDataOptions().calcs(["lastNotNull"])


def hosts_with(title: str, description: str, condition: str) -> stat.Panel:
    """A stat of how many hosts meet `condition` now: green at 0, red from 1."""
    return (
        panel(
            stat.Panel,
            title,
            description,
            [target(f"count(count by (instance) ({condition})) or vector(0)", instant=True)],
            6,
            4,
        )
        .thresholds(thresholds((None, "green"), (1, "red")))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .reduce_options(last_value())
    )


def transformation(kind: str, options: dict[str, Any]) -> model.DataTransformerConfig:
    # The SDK types the transformation itself but not its options (an `object` per transformer id):
    # these are the one raw dictionary left, in Grafana's own option names.
    return model.DataTransformerConfig(id_val=kind, options=options)


def merged_table(
    title: str, description: str, exprs: list[str], w: int, columns: dict[str, str | None]
) -> table.Panel:
    """Instant queries joined into one row per series; `columns`: rename to a title, or None to hide."""
    refs = [chr(ord("A") + i) for i in range(len(exprs))]
    hide = {"Time": True} | {k: True for k, v in columns.items() if v is None}
    rename = {k: v for k, v in columns.items() if v is not None}
    options: dict[str, Any] = {"excludeByName": hide} | ({"renameByName": rename} if rename else {})
    return panel(
        table.Panel,
        title,
        description,
        [target(e, instant=True, fmt="table", ref=r) for e, r in zip(exprs, refs, strict=True)],
        w,
        8,
    ).transformations([transformation("merge", {}), transformation("organize", options)])


def verdict_mappings() -> list[model.ValueMapping]:
    return [
        model.ValueMap(
            options={
                str(i): model.ValueMappingResult(text=v, color=COLOURS[v], index=i)
                for i, v in enumerate(VERDICT_CODES)
            }
        )
    ]


def bars(title: str, description: str, expr: str, legend: str, w: int, h: int) -> bargauge.Panel:
    return (
        panel(bargauge.Panel, title, description, [target(expr, legend, instant=True)], w, h)
        .display_mode(common.BarGaugeDisplayMode.BASIC)
        .orientation(common.VizOrientation.HORIZONTAL)
        .reduce_options(last_value())
    )


def fleet_bars(title: str, description: str, record: str, by: str) -> bargauge.Panel:
    """A bar per group of a fleet recording rule (packaging/prometheus/relaywatch-recording.yml): a few
    series whatever the number of hosts, so the panel stays cheap at 100,000 hosts."""
    return bars(title, description, record, f"{{{{{by}}}}}", 8, 6)


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

PANELS: list[Panel] = [
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
    bars(
        "Interceptions by product",
        "Which products intercept, counted over hosts and targets.",
        "count by (product) (relaywatch_interceptor_info)",
        "{{product}}",
        12,
        4,
    ),
    panel(
        statetimeline.Panel,
        "Verdict over time",
        "Each host and target's verdict; red: intercepted or stripped.",
        [target(VERDICT_EXPR, "{{instance}} {{target}} {{address}}")],
        24,
        8,
    )
    .mappings(verdict_mappings())
    .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
    .show_value(common.VisibilityMode.NEVER)
    .merge_values(True),
    merged_table(
        "STARTTLS and TLS per target",
        "STARTTLS state and negotiated TLS version of the last probe.",
        [f"relaywatch_starttls_state{{{SEL}}} == 1", f"relaywatch_tls_version_info{{{SEL}}}"],
        12,
        {"Value #A": None, "Value #B": None, "__name__": None},
    ),
    panel(
        table.Panel,
        "Chain presented",
        "The certificates of the last probe, leaf first; expected=false is foreign.",
        [target(f"relaywatch_chain_certificate_info{{{SEL}}}", instant=True, fmt="table")],
        12,
        8,
    )
    .transformations(
        [transformation("organize", {"excludeByName": {"Time": True, "Value": True, "__name__": True}})]
    )
    .override_by_name(
        "expected",
        [
            model.DynamicConfigValue(
                id_val="mappings",
                value=[
                    model.ValueMap(
                        options={
                            "false": model.ValueMappingResult(color="red", index=0),
                            "true": model.ValueMappingResult(color="green", index=1),
                        }
                    )
                ],
            ),
            model.DynamicConfigValue(
                id_val="custom.cellOptions", value=common.TableColoredBackgroundCellOptions()
            ),
        ],
    ),
    panel(
        bargauge.Panel,
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
    )
    .unit("d")
    .thresholds(thresholds((None, "red"), (14, "orange"), (30, "green")))
    .display_mode(common.BarGaugeDisplayMode.GRADIENT)
    .orientation(common.VizOrientation.HORIZONTAL)
    .reduce_options(last_value()),
    panel(
        timeseries.Panel,
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
    )
    .unit("s")
    .stacking(StackingConfig().mode(common.StackingMode.NORMAL)),
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


def layout(panels: list[Panel]) -> list[Panel]:
    """Left to right, wrapping at 24 columns: ids and positions follow from the order above. Explicit, as
    the SDK's own placement only wraps after a row overflows."""
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        pos = p.build().grid_pos
        assert pos is not None  # every panel() has a span and a height
        w, h = pos.w, pos.h
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p.id(i).grid_pos(model.GridPos(x=x, y=y, w=w, h=h))
        x, row_h = x + w, max(row_h, h)
    return panels


def variable(name: str, label: str, query: str) -> dash.QueryVariable:
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query({"query": query, "refId": name})
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True)
        .multi(True)
        .all_value(".*")
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )


def build() -> model.Dashboard:
    d = (
        dash.Dashboard("relaywatch: mail relay TLS")
        .uid("relaywatch")
        .description("TLS interception, STARTTLS stripping and downgrades on the path to the mail relays.")
        .tags(["relaywatch", "tls", "smtp"])
        .version(1)
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .refresh("1m")
        .with_variable(dash.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(variable("instance", "Host", "label_values(relaywatch_build_info, instance)"))
        .with_variable(
            variable(
                "target", "Target", 'label_values(relaywatch_probe_success{instance=~"$instance"}, target)'
            )
        )
    )
    for p in layout(PANELS):
        d.with_panel(p)
    return d.build()


def dashboard() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (plain data, as the tests and json.dumps want it)."""
    data: dict[str, Any] = json.loads(json.dumps(build(), cls=JSONEncoder))
    return data


def main() -> None:
    out = Path(__file__).with_name("relaywatch.json")
    out.write_text(json.dumps(dashboard(), indent=2) + "\n")


if __name__ == "__main__":
    main()
