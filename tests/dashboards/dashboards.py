"""Reading kpid's Grafana dashboards (dashboards/grafana/*.json) for tests:
their panels, query targets, template variables and the metric names their
PromQL uses. Shared by check_dashboards.py (structure) and
tests/integration/dashboards_test.py (every query against a real Prometheus).
"""

import glob
import json
import os
import re

# DESIGN §4 (the metrics contract). Histograms also expose _bucket/_sum/_count.
CONTRACT_METRICS = {
    # counters
    "kpid_stage_entered_total", "kpid_stage_exited_total", "kpid_stage_sla_met_total",
    "kpid_stage_sla_missed_total", "kpid_stage_rework_total", "kpid_stage_sla_breaches_total",
    "kpid_transitions_total", "kpid_process_cases_started_total",
    "kpid_process_cases_completed_total", "kpid_process_cases_fallout_total",
    "kpid_process_cases_expired_total", "kpid_process_revenue_total", "kpid_process_cost_total",
    # gauges
    "kpid_stage_backlog", "kpid_stage_backlog_over_sla", "kpid_stage_oldest_case_age_seconds",
    "kpid_process_open_cases",
    # window gauges
    "kpid_window_stage_entered", "kpid_window_stage_exited", "kpid_window_stage_advanced",
    "kpid_window_stage_fallout", "kpid_window_stage_sla_met", "kpid_window_stage_rework",
    "kpid_window_stage_conversion_ratio", "kpid_window_stage_fallout_ratio",
    "kpid_window_stage_sla_attainment_ratio", "kpid_window_stage_rework_ratio",
    "kpid_window_stage_cycle_time_seconds",
    "kpid_window_process_started", "kpid_window_process_completed",
    "kpid_window_process_fallout", "kpid_window_process_revenue", "kpid_window_process_cost",
    "kpid_window_process_win_ratio", "kpid_window_process_avg_deal",
    "kpid_window_process_cost_to_serve", "kpid_window_process_feedback_score",
    "kpid_window_process_lead_time_seconds", "kpid_kpi_tree_value",
    # self
    "kpid_build_info", "kpid_events_consumed_total", "kpid_events_rejected_total",
    "kpid_events_duplicate_total", "kpid_events_late_total", "kpid_consumer_lag_messages",
    "kpid_watermark_timestamp_seconds", "kpid_alerts", "kpid_notifications_total",
}
CONTRACT_HISTOGRAMS = {"kpid_stage_cycle_time_seconds", "kpid_process_lead_time_seconds"}

# Exported by kpid beyond §4 (grep '"kpid_' daemon/): issue 5's sensitivity,
# and self metrics of the ingest, dead-letter and notifier code.
EXTRA_KPID_METRICS = {
    "kpid_kpi_tree_sensitivity", "kpid_dead_letter_messages_total",
    "kpid_notification_queue_length", "kpid_series_folded_total",
}

# Series Prometheus itself records for every scrape target.
PROMETHEUS_SCRAPE_METRICS = {"up", "scrape_samples_scraped", "scrape_duration_seconds",
                             "scrape_samples_post_metric_relabeling", "scrape_series_added"}


def allowed_metrics():
    names = set(CONTRACT_METRICS) | EXTRA_KPID_METRICS | PROMETHEUS_SCRAPE_METRICS
    for h in CONTRACT_HISTOGRAMS:
        names |= {h + "_bucket", h + "_sum", h + "_count"}
    return names


# Variables Grafana defines itself.
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s",
                     "__range_ms", "__dashboard", "__from", "__to", "__org", "__user",
                     "__timeFilter", "timeFilter"}

# PromQL words that are not metric names.
PROMQL_WORDS = {
    "sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "and", "or", "unless", "rate", "irate", "increase", "delta", "idelta",
    "deriv", "histogram_quantile", "label_replace", "label_join", "time", "vector", "scalar",
    "abs", "clamp", "clamp_min", "clamp_max", "sort", "sort_desc", "absent", "absent_over_time",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "last_over_time",
    "count_over_time", "resets", "changes", "round", "ceil", "floor", "sqrt", "exp", "ln",
    "log2", "log10", "timestamp", "predict_linear", "inf", "nan",
}

_VAR_RE = re.compile(r"\$\{([A-Za-z_]\w*)(?::[^}]*)?\}|\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)\]\]")


def dashboard_paths(root):
    return sorted(glob.glob(os.path.join(root, "dashboards", "grafana", "*.json")))


def load(path):
    with open(path) as f:
        return json.load(f)


def panels(dashboard):
    """Every panel, rows' nested panels included."""
    out = []
    for p in dashboard.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def targets(dashboard):
    """(panel, target) for every query target of every panel."""
    return [(p, t) for p in panels(dashboard) for t in p.get("targets", [])]


def variables(dashboard):
    return dashboard.get("templating", {}).get("list", [])


def variable_query(var):
    q = var.get("query", "")
    return q.get("query", "") if isinstance(q, dict) else q


def variable_refs(text):
    """Names of the template variables `text` refers to."""
    return {next(g for g in m.groups() if g) for m in _VAR_RE.finditer(text)}


def substitute(text, values):
    """Replaces every variable reference by values[name] (KeyError if missing)."""
    return _VAR_RE.sub(lambda m: values[next(g for g in m.groups() if g)], text)


def metric_names(expr):
    """Metric names used by a PromQL expression (or a label_values() query)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    s = re.sub(r"\{[^}]*\}", "{}", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", "[]", s)  # range durations
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", s)
    s = re.sub(r"\boffset\s+\S+", "offset", s)
    s = re.sub(r"\blabel_values\s*\(", "(", s)
    s = re.sub(r",\s*\$?\w+\s*\)", ")", s)  # label_values' label argument
    names = set()
    for m in re.finditer(r"(?<![\w$])([A-Za-z_:][\w:]*)", s):
        word = m.group(1)
        if word in PROMQL_WORDS or re.fullmatch(r"[0-9.e+-]+", word):
            continue
        names.add(word)
    return names
