#!/usr/bin/env python3
"""Structural checks over every dashboard of dashboards/grafana/ (ctest,
label unit): ids, layout, datasource, variables, metric names, units.

    check_dashboards.py SOURCE_DIR
"""

import sys

import dashboards as dash

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
NO_UNIT_TYPES = {"row", "table", "nodeGraph", "text"}


def overlaps(a, b):
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and
            a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def check(path, errors, uids):
    def err(msg):
        errors.append(f"{path}: {msg}")

    d = dash.load(path)
    if d.get("schemaVersion") != SCHEMA_VERSION:
        err(f"schemaVersion {d.get('schemaVersion')}, want {SCHEMA_VERSION}")
    if not d.get("uid") or d["uid"] in uids:
        err(f"missing or duplicate uid {d.get('uid')!r}")
    uids.add(d.get("uid"))

    variables = dash.variables(d)
    names = [v["name"] for v in variables]
    if len(set(names)) != len(names):
        err(f"duplicate template variables {names}")
    ds = [v for v in variables if v["name"] == "datasource"]
    if not ds or ds[0].get("type") != "datasource" or ds[0].get("query") != "prometheus":
        err("needs a 'datasource' variable of type datasource, query prometheus")
    known = set(names) | dash.BUILTIN_VARIABLES
    allowed = dash.allowed_metrics()

    def check_text(where, text):
        for ref in dash.variable_refs(text):
            if ref not in known:
                err(f"{where}: unknown template variable ${ref}")

    for v in variables:
        if v.get("type") == "query":
            if v.get("datasource") != DATASOURCE:
                err(f"variable {v['name']}: datasource {v.get('datasource')}, want {DATASOURCE}")
            q = dash.variable_query(v)
            check_text(f"variable {v['name']}", q)
            for m in dash.metric_names(q):
                if m not in allowed:
                    err(f"variable {v['name']}: metric {m} is not one kpid exports")

    ids = set()
    placed = []
    for p in dash.panels(d):
        where = f"panel {p.get('id')} {p.get('title')!r}"
        if p.get("id") in ids or not isinstance(p.get("id"), int):
            err(f"{where}: missing or duplicate id")
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in "xywh") or g["x"] + g["w"] > 24 or g["x"] < 0:
            err(f"{where}: bad gridPos {g}")
            continue
        for other_where, other in placed:
            if overlaps(g, other):
                err(f"{where}: gridPos {g} overlaps {other_where} {other}")
        placed.append((where, g))
        check_text(where, p.get("title", ""))
        if p["type"] == "row":
            continue
        if p.get("datasource") != DATASOURCE:
            err(f"{where}: datasource {p.get('datasource')}, want {DATASOURCE}")
        if p["type"] not in NO_UNIT_TYPES and not p.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            err(f"{where}: no unit")
        if not p.get("targets"):
            err(f"{where}: no query")
        refs = [t.get("refId") for t in p.get("targets", [])]
        if len(set(refs)) != len(refs):
            err(f"{where}: duplicate refIds {refs}")
        for t in p.get("targets", []):
            if t.get("datasource") != DATASOURCE:
                err(f"{where} {t.get('refId')}: datasource {t.get('datasource')}, want {DATASOURCE}")
            expr = t.get("expr", "")
            check_text(f"{where} {t.get('refId')}", expr + " " + t.get("legendFormat", ""))
            metrics = dash.metric_names(expr)
            if not metrics:
                err(f"{where} {t.get('refId')}: no metric in {expr!r}")
            for m in metrics:
                if m not in allowed:
                    err(f"{where} {t.get('refId')}: metric {m} is not one kpid exports")


def main():
    root = sys.argv[1]
    paths = dash.dashboard_paths(root)
    errors = []
    if len(paths) < 4:
        errors.append(f"expected 4 dashboards, found {paths}")
    uids = set()
    for path in paths:
        check(path, errors, uids)
    for e in errors:
        print(e)
    print(f"{len(paths)} dashboards, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
