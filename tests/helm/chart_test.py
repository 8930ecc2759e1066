#!/usr/bin/env python3
"""Checks deploy/helm/kpid without a cluster or a helm binary.

The chart is rendered by tests/helm/render (Go text/template + sprig: Helm's
engine) with its default values and with ci/full-values.yaml; every document
must parse, every expected object be there, selectors select the pods,
probes and Services point at the ports kpid's rendered config listens on,
and that config must pass `kpid check-config` with its rules mounted the way
the StatefulSet mounts them. Values files are validated against
values.schema.json as Helm does (defaults coalesced with the file).

  chart_test.py --source ROOT --render HELM_RENDER [--kpid KPID]

With a `helm` binary on PATH, `helm lint` and `helm template` run too, and
helm's objects must be the renderer's; otherwise those tests are skipped.
"""

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import jsonschema
import yaml

ARGS = None

EXPECTED_KINDS_DEFAULT = {"StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget",
                          "ServiceAccount"}
EXPECTED_KINDS_FULL = EXPECTED_KINDS_DEFAULT | {"ServiceMonitor", "PrometheusRule",
                                                "NetworkPolicy"}

RELEASE, NAMESPACE = "kpid", "kpi"


def chart_dir():
    return os.path.join(ARGS.source, "deploy", "helm", "kpid")


def full_values_file():
    return os.path.join(chart_dir(), "ci", "full-values.yaml")


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of duplicate keys; the API server refuses them
    (e.g. a commonLabels key that a template also sets)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        duplicates = sorted({str(k) for k in keys if keys.count(k) > 1})
        if duplicates:
            raise yaml.constructor.ConstructorError(None, None,
                                                    f"duplicate keys {duplicates}",
                                                    node.start_mark)
        return super().construct_mapping(node, deep=deep)


def render(values_files=(), expect_ok=True):
    cmd = [ARGS.render, "--chart", chart_dir(), "--release", RELEASE, "--namespace", NAMESPACE]
    for f in values_files:
        cmd += ["--values", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if not expect_ok:
        return proc
    if proc.returncode != 0:
        raise AssertionError("render failed: " + proc.stderr)
    return [d for d in yaml.load_all(proc.stdout, Loader=UniqueKeyLoader) if d is not None]


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def coalesce(dst, src):
    """Helm's merge of user values over the chart's: maps merge, null deletes."""
    for k, v in src.items():
        if v is None:
            dst.pop(k, None)
        elif isinstance(v, dict) and isinstance(dst.get(k), dict):
            coalesce(dst[k], v)
        else:
            dst[k] = v
    return dst


def values_for(values_files):
    values = load_yaml(os.path.join(chart_dir(), "values.yaml"))
    for f in values_files:
        coalesce(values, load_yaml(f))
    return values


def leaf_paths(node, prefix=""):
    """Dotted paths of the leaves of values.yaml: lists and empty maps are leaves."""
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from leaf_paths(v, f"{prefix}.{k}" if prefix else k)
    else:
        yield prefix


def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    if len(found) != 1:
        raise AssertionError(f"expected one {kind} {name or ''}, found {len(found)}")
    return found[0]


def selects(selector, labels):
    """A LabelSelector (matchLabels + matchExpressions) against a label map."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        op, key = e["operator"], e["key"]
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op == "In" and labels.get(key) not in e["values"]:
            return False
        if op == "NotIn" and labels.get(key) in e["values"]:
            return False
    return True


def tls_secret(tmp):
    """The data of a kubernetes.io/tls Secret: a self-signed certificate (its own CA)."""
    key, crt = os.path.join(tmp, "secret.key"), os.path.join(tmp, "secret.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "1", "-subj", "/CN=kpid", "-addext", "subjectAltName=DNS:kpid"],
                   check=True, capture_output=True, timeout=60)
    with open(key) as k, open(crt) as c:
        cert = c.read()
        return {"tls.key": k.read(), "tls.crt": cert, "ca.crt": cert}


def listen_port(listen):
    return int(listen.rsplit(":", 1)[1])


def http_routes():
    """The GET paths kpid's HTTP server serves, from its source."""
    with open(os.path.join(ARGS.source, "daemon", "http", "http_server.cc")) as f:
        return set(re.findall(r'\.Get\("([^"]+)"', f.read()))


def render_with(values):
    """Renders the chart with the defaults and `values` (a dict) as a values file."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump(values, f)
        f.flush()
        return render([f.name])


def rendered_config(docs):
    return yaml.safe_load(one(docs, "ConfigMap", RELEASE)["data"]["kpid.yaml"])


def run_check_config(kpid, config_path):
    """kpid check-config on a rendered config; its stdout."""
    proc = subprocess.run([kpid, "check-config", config_path], capture_output=True, text=True,
                          timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"check-config failed: {proc.stderr}")
    return proc.stdout


class ChartFilesTest(unittest.TestCase):
    """The chart carries copies of files Helm cannot read from outside it."""

    def assert_same_files(self, source_dir, pattern, chart_sub):
        src = os.path.join(ARGS.source, source_dir)
        dst = os.path.join(chart_dir(), chart_sub)
        names = sorted(n for n in os.listdir(src) if re.fullmatch(pattern, n))
        self.assertTrue(names, f"no {pattern} in {source_dir}")
        self.assertEqual(names, sorted(n for n in os.listdir(dst) if re.fullmatch(pattern, n)),
                         f"files of {chart_sub} differ from {source_dir}")
        for n in names:
            with open(os.path.join(src, n), "rb") as a, open(os.path.join(dst, n), "rb") as b:
                self.assertEqual(a.read(), b.read(),
                                 f"{chart_sub}/{n} is stale: cp {source_dir}/{n} "
                                 f"deploy/helm/kpid/{chart_sub}/")

    def test_prometheus_rules_copy(self):
        self.assert_same_files("rules/prometheus", r".*\.ya?ml", "files/prometheus")

    def test_dashboards_copy(self):
        self.assert_same_files("dashboards/grafana", r".*\.json", "files/dashboards")

    def test_kpid_rules_copy(self):
        self.assert_same_files("rules", r".*\.yaml", "files/rules")


class ValuesTest(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(chart_dir(), "values.schema.json")) as f:
            self.schema = json.load(f)
        jsonschema.Draft7Validator.check_schema(self.schema)
        self.validator = jsonschema.Draft7Validator(self.schema)

    def test_default_and_full_values_validate(self):
        for files in ([], [full_values_file()]):
            errors = [e.message for e in self.validator.iter_errors(values_for(files))]
            self.assertEqual(errors, [], files)

    def test_bad_values_fail(self):
        bad = {
            "negative replicas": {"replicaCount": -1},
            "port out of range": {"ports": {"http": 70000}},
            "chart-owned config key": {"config": {"http": {"listen": "0.0.0.0:1"}}},
            "unknown top-level key": {"replicas": 3},
            "typo in a section": {"serviceMonitor": {"enable": True}},
            "non-string label": {"serviceMonitor": {"labels": {"release": 1}}},
            "bad duration": {"serviceMonitor": {"interval": "15 seconds"}},
            "bad log level": {"logLevel": "verbose"},
            "rule file not .yaml": {"alertRules": {"extra": {"x.txt": {"groups": []}}}},
            "one replica_id for every pod": {"config": {"replica_id": "kpid"}},
            "peers.dns without a port": {"config": {"peers": {"dns": "kpid-headless"}}},
            "peer address without a port": {"config": {"peers": {"addresses": ["kpid-0"]}}},
            "bad peers.timeout": {"config": {"peers": {"timeout": "2 s"}}},
            "typo in peers": {"config": {"peers": {"refresh": "30s"}}},
            "state_topic not a string": {"config": {"kafka": {"state_topic": ["a"]}}},
            "typo dropping hardening": {"securityContext": {"readOnlyRootFileSystem": True}},
            "Kafka port out of range": {"networkPolicy": {"kafkaPorts": [0]}},
            "typo in networkPolicy": {"networkPolicy": {"kafkaPeers": []}},
        }
        for what, override in bad.items():
            values = coalesce(values_for([]), copy.deepcopy(override))
            self.assertFalse(self.validator.is_valid(values), what)

    def test_schema_is_strict(self):
        """Every object the schema describes refuses unknown keys, but for the
        kpid config: kpid itself checks it strictly (check-config), and its
        keys grow with kpid versions the chart does not pin."""
        open_objects = {"config", "config.kafka", "config.dimensions"}
        loose = []

        def walk(node, path):
            if node.get("properties") and node.get("additionalProperties") is not False:
                if path not in open_objects and not isinstance(node.get("additionalProperties"), dict):
                    loose.append(path or "<root>")
            for key, child in node.get("properties", {}).items():
                walk(child, f"{path}.{key}" if path else key)
            if isinstance(node.get("items"), dict):
                walk(node["items"], path + "[]")

        walk(self.schema, "")
        self.assertEqual(loose, [])

    def test_every_value_documented_and_typed(self):
        values = load_yaml(os.path.join(chart_dir(), "values.yaml"))
        with open(os.path.join(chart_dir(), "README.md")) as f:
            readme = f.read()
        paths = list(leaf_paths(values))
        self.assertGreater(len(paths), 50)
        self.assertEqual([p for p in paths if f"`{p}`" not in readme], [],
                         "values.yaml leaves missing from README.md")
        for p in paths:
            node = self.schema
            for key in p.split("."):
                self.assertIn(key, node.get("properties", {}), f"values.schema.json lacks {p}")
                node = node["properties"][key]


class RenderTest(unittest.TestCase):
    def check_common(self, docs, values, expected_kinds):
        for d in docs:
            self.assertIn("apiVersion", d)
            self.assertTrue(d["metadata"]["name"])
            self.assertLessEqual(len(d["metadata"]["name"]), 63)
        self.assertEqual(expected_kinds - {d["kind"] for d in docs}, set())
        names = [(d["kind"], d["metadata"]["name"]) for d in docs]
        self.assertEqual(len(names), len(set(names)), "duplicate objects")

        sts = one(docs, "StatefulSet")
        pod = sts["spec"]["template"]
        pod_labels = pod["metadata"]["labels"]
        self.assertEqual(sts["spec"]["replicas"], values["replicaCount"])
        self.assertTrue(selects(sts["spec"]["selector"], pod_labels))

        services = [d for d in docs if d["kind"] == "Service"]
        self.assertEqual(len(services), 2)
        headless = one(docs, "Service", sts["spec"]["serviceName"])
        self.assertEqual(headless["spec"]["clusterIP"], "None")
        # The same pods as the StatefulSet, and restoring (not ready) peers
        # too: a global snapshot reports them partial instead of missing them.
        self.assertEqual(headless["spec"]["selector"], sts["spec"]["selector"]["matchLabels"])
        self.assertIs(headless["spec"]["publishNotReadyAddresses"], True)
        self.assertEqual({p["name"] for p in headless["spec"]["ports"]}, {"http", "grpc"})
        container = one([dict(c, kind="c", metadata={"name": c["name"]})
                         for c in pod["spec"]["containers"]], "c", "kpid")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for svc in services:
            for k, v in svc["spec"]["selector"].items():
                self.assertEqual(pod_labels.get(k), v, f"Service {svc['metadata']['name']}")
            for p in svc["spec"]["ports"]:
                self.assertIn(p["targetPort"], ports)
                self.assertEqual(p["port"], ports[p["targetPort"]])

        pdb = one(docs, "PodDisruptionBudget")
        self.assertTrue(selects(pdb["spec"]["selector"], pod_labels))

        # Probes on kpid's real endpoints (routes of its HTTP server), on the
        # port its config listens on.
        self.assertEqual(container["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(container["readinessProbe"]["httpGet"]["path"], "/readyz")
        for probe in ("livenessProbe", "readinessProbe"):
            self.assertIn(container[probe]["httpGet"]["path"], http_routes())
        for probe in ("livenessProbe", "readinessProbe"):
            self.assertEqual(container[probe]["httpGet"]["port"], "http")
        config_map = one(docs, "ConfigMap", sts["metadata"]["name"])
        config = yaml.safe_load(config_map["data"]["kpid.yaml"])
        self.assertEqual(listen_port(config["http"]["listen"]), ports["http"])
        self.assertEqual(listen_port(config["grpc"]["listen"]), ports["grpc"])
        self.assertEqual(ports["http"], values["ports"]["http"])

        # Hardening.
        pod_sc, sc = pod["spec"]["securityContext"], container["securityContext"]
        self.assertTrue(pod_sc["runAsNonRoot"])
        self.assertNotEqual(pod_sc["runAsUser"], 0)
        self.assertEqual(pod_sc["seccompProfile"]["type"], "RuntimeDefault")
        self.assertTrue(sc["readOnlyRootFilesystem"])
        self.assertFalse(sc["allowPrivilegeEscalation"])
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertIn("requests", container["resources"])

        # Every mount has a volume or claim; kpid's args name the mounted config.
        volumes = {v["name"] for v in pod["spec"]["volumes"]}
        volumes |= {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        self.assertEqual(set(mounts) - volumes, set())
        self.assertIn(f"--config={mounts['config']}/kpid.yaml", container["args"])
        self.assertEqual(mounts["state"], values["persistence"]["mountPath"])
        self.check_issue8_keys(config, values, headless, ports)
        return sts, container, config_map

    def check_issue8_keys(self, config, values, headless, ports):
        """state_dir on the state volume; peers = the headless Service's pods' gRPC,
        over TLS with the Secret's CA (and the pod's certificate with mutual TLS)
        when gRPC serves TLS."""
        self.assertEqual(config["state_dir"], values["persistence"]["mountPath"])
        # One ConfigMap serves every pod: replica_id stays kpid's default,
        # each pod's host name (kpid-0, kpid-1: StatefulSet pod names).
        self.assertNotIn("replica_id", config)
        self.assertEqual(config["kafka"]["state_topic"],
                         values["config"]["kafka"]["state_topic"])
        dns = (f"{headless['metadata']['name']}.{NAMESPACE}.svc.{values['clusterDomain']}:"
               f"{ports['grpc']}")
        expected = {"dns": dns, "timeout": values["config"]["peers"]["timeout"],
                    "refresh_interval": values["config"]["peers"]["refresh_interval"]}
        if values["tls"]["secretName"] and values["tls"]["grpc"]:
            expected["tls"] = {"ca_file": "tls/ca.crt"}
            if values["tls"]["clientAuth"]["grpc"]:
                expected["tls"].update(cert_file="tls/tls.crt", key_file="tls/tls.key")
        self.assertEqual(config["peers"], expected)

    def check_config_with_kpid(self, docs, sts, config_map):
        """Writes the config volume as the pod would see it; kpid check-config on it.

        A Secret source is the TLS Secret: its keys get a real certificate
        and key, made with the openssl tool.
        """
        volume = one([dict(v, kind="v", metadata={"name": v["name"]})
                      for v in sts["spec"]["template"]["spec"]["volumes"]], "v", "config")
        with tempfile.TemporaryDirectory() as tmp:
            for source in volume["projected"]["sources"]:
                if "secret" in source:
                    secret = tls_secret(tmp)
                    data = {i["key"]: secret[i["key"]] for i in source["secret"]["items"]}
                    items = source["secret"]["items"]
                else:
                    cm = one(docs, "ConfigMap", source["configMap"]["name"])
                    data, items = cm["data"], source["configMap"]["items"]
                for item in items:
                    path = os.path.join(tmp, item["path"])
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "w") as f:
                        f.write(data[item["key"]])
            self.assertEqual(set(config_map["data"]),
                             {i["key"] for s in volume["projected"]["sources"]
                              for i in s.get("configMap", {}).get("items", [])},
                             "ConfigMap keys not all mounted")
            if not ARGS.kpid:
                self.skipTest("no --kpid: kpid check-config not run")
            return run_check_config(ARGS.kpid, os.path.join(tmp, "kpid.yaml"))

    def test_default_values(self):
        values = values_for([])
        docs = render()
        sts, container, config_map = self.check_common(docs, values, EXPECTED_KINDS_DEFAULT)
        kinds = {d["kind"] for d in docs}
        self.assertEqual(kinds & {"ServiceMonitor", "PrometheusRule", "NetworkPolicy"}, set())
        self.assertNotIn("volumeClaimTemplates", sts["spec"])
        state = [v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "state"]
        self.assertEqual(state, [{"name": "state", "emptyDir": {}}])
        # No TLS Secret: plaintext listeners, probed over HTTP.
        config = yaml.safe_load(config_map["data"]["kpid.yaml"])
        self.assertNotIn("tls", config["http"])
        self.assertNotIn("tls", config["grpc"])
        for probe in ("livenessProbe", "readinessProbe"):
            self.assertEqual(container[probe]["httpGet"]["scheme"], "HTTP")
        # 6 = the alert rules of rules/lead_to_cash.yaml (3 + 2 + 1 in its three groups).
        out = self.check_config_with_kpid(docs, sts, config_map)
        self.assertIn("(1 processes, 6 alert rules)", out)

    def test_full_values(self):
        values = values_for([full_values_file()])
        docs = render([full_values_file()])
        sts, container, config_map = self.check_common(docs, values, EXPECTED_KINDS_FULL)
        pod_labels = sts["spec"]["template"]["metadata"]["labels"]

        # The ServiceMonitor scrapes the main Service only (the headless one
        # too would scrape every pod twice), on a port that Service has, and
        # carries the labels the Prometheus selects on.
        sm = one(docs, "ServiceMonitor")
        services = [d for d in docs if d["kind"] == "Service"]
        scraped = [s for s in services if selects(sm["spec"]["selector"], s["metadata"]["labels"])]
        self.assertEqual([s["metadata"]["name"] for s in scraped], [sts["metadata"]["name"]])
        self.assertEqual(sm["metadata"]["labels"]["release"], "kube-prometheus-stack")
        self.assertEqual(sm["metadata"]["namespace"], "monitoring")
        self.assertEqual(sm["spec"]["namespaceSelector"]["matchNames"], ["kpi"])
        self.assertEqual(sm["spec"]["endpoints"][0]["port"], "http")
        self.assertIn(sm["spec"]["endpoints"][0]["path"], http_routes())
        self.assertIn("http", [p["name"] for p in scraped[0]["spec"]["ports"]])

        # TLS from the Secret: both listeners, mutual on grpc only; HTTPS
        # probes and scrapes; the Secret's keys beside kpid.yaml.
        config = yaml.safe_load(config_map["data"]["kpid.yaml"])
        self.assertEqual(config["http"]["tls"],
                         {"cert_file": "tls/tls.crt", "key_file": "tls/tls.key"})
        self.assertEqual(config["grpc"]["tls"], {"cert_file": "tls/tls.crt",
                                                 "key_file": "tls/tls.key",
                                                 "client_ca_file": "tls/ca.crt"})
        for probe in ("livenessProbe", "readinessProbe"):
            self.assertEqual(container[probe]["httpGet"]["scheme"], "HTTPS")
        self.assertEqual(sm["spec"]["endpoints"][0]["scheme"], "https")
        self.assertEqual(sm["spec"]["endpoints"][0]["tlsConfig"],
                         values["serviceMonitor"]["tlsConfig"])
        sources = sts["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"]
        secret = [s["secret"] for s in sources if "secret" in s]
        self.assertEqual([s["name"] for s in secret], ["kpid-tls"])
        self.assertEqual(sorted(i["path"] for i in secret[0]["items"]),
                         ["tls/ca.crt", "tls/tls.crt", "tls/tls.key"])

        # PrometheusRule: the groups of rules/prometheus/kpid.rules.yml, then the extra ones.
        rule = one(docs, "PrometheusRule")
        source = load_yaml(os.path.join(ARGS.source, "rules", "prometheus", "kpid.rules.yml"))
        self.assertEqual(rule["spec"]["groups"],
                         source["groups"] + values["prometheusRule"]["extraGroups"])

        # One dashboard ConfigMap per JSON, as the Grafana sidecar wants them.
        grafana_dir = os.path.join(ARGS.source, "dashboards", "grafana")
        dashboards = sorted(n for n in os.listdir(grafana_dir) if n.endswith(".json"))
        found = {}
        for cm in docs:
            if cm["kind"] == "ConfigMap" and cm["metadata"]["labels"].get("grafana_dashboard") == "1":
                self.assertEqual(cm["metadata"]["annotations"]["grafana_folder"], "Revenue ops")
                self.assertEqual(cm["metadata"]["namespace"], "monitoring")
                found.update(cm["data"])
        self.assertEqual(sorted(found), dashboards)
        for name in dashboards:
            with open(os.path.join(grafana_dir, name)) as f:
                self.assertEqual(json.loads(found[name]), json.load(f), name)

        # Persistence: one claim per pod, mounted where the values say.
        claims = sts["spec"]["volumeClaimTemplates"]
        self.assertEqual([c["metadata"]["name"] for c in claims], ["state"])
        self.assertEqual(claims[0]["spec"]["resources"]["requests"]["storage"], "5Gi")
        self.assertEqual(claims[0]["spec"]["storageClassName"], "fast-ssd")
        self.assertNotIn("state", [v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]])
        self.assertEqual(sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"], "Delete")

        netpol = one(docs, "NetworkPolicy")
        self.check_network_policy(netpol, values, pod_labels)
        # Named ports of the policy are the container's.
        named = {p["port"] for rules in (netpol["spec"]["ingress"], netpol["spec"]["egress"])
                 for r in rules for p in r["ports"] if isinstance(p["port"], str)}
        self.assertEqual(named, {p["name"] for p in container["ports"]})

        # The full config: real brokers, no embedded-only key left; extra rule mounted.
        config = yaml.safe_load(config_map["data"]["kpid.yaml"])
        self.assertNotIn("partitions", config["kafka"])
        self.assertEqual(config["rules"], ["rules/*.yaml"])
        self.assertIn("rules.lead_to_cash_backlog.yaml", config_map["data"])
        # 7 = 6 bundled rules + DemoBacklogOverSla.
        out = self.check_config_with_kpid(docs, sts, config_map)
        self.assertIn("(1 processes, 7 alert rules)", out)

    def check_network_policy(self, netpol, values, pod_labels):
        """Who may talk to kpid and to whom kpid may talk, rule by rule."""
        np = values["networkPolicy"]
        self.assertTrue(selects(netpol["spec"]["podSelector"], pod_labels))
        self.assertEqual(netpol["spec"]["policyTypes"], ["Ingress", "Egress"])

        def is_kpid(peer):
            return set(peer) == {"podSelector"} and selects(peer["podSelector"], pod_labels)

        def ports(rule):
            return sorted(str(p["port"]) for p in rule["ports"])

        ingress = netpol["spec"]["ingress"]
        # Peers' GetSnapshot fan-out: gRPC from kpid pods (of this release only).
        self.assertEqual(ports(ingress[0]), ["grpc"])
        self.assertTrue(all(is_kpid(p) for p in ingress[0]["from"]))
        self.assertFalse(selects(ingress[0]["from"][0]["podSelector"],
                                 dict(pod_labels, **{"app.kubernetes.io/instance": "other"})))
        # Clients on both ports, Prometheus on http only.
        self.assertEqual([(ports(r), r["from"]) for r in ingress[1:]],
                         [(["grpc", "http"], np["ingressFrom"]), (["http"], np["prometheusFrom"])])

        egress = netpol["spec"]["egress"]
        # DNS, peers' gRPC, Kafka on the brokers' port (9092 in
        # config.kafka.brokers), Alertmanager on its URL's port (9093), extras.
        self.assertEqual([ports(r) for r in egress],
                         [["53", "53"], ["grpc"], ["9092"], ["9093"], ["4317"]])
        self.assertEqual({p["protocol"] for p in egress[0]["ports"]}, {"UDP", "TCP"})
        self.assertEqual(egress[0]["to"], np["dnsTo"])
        self.assertTrue(all(is_kpid(p) for p in egress[1]["to"]))
        self.assertEqual(egress[2]["to"], np["kafkaTo"])
        self.assertNotIn("to", egress[3])
        self.assertEqual(egress[4:], np["egress"])

    def test_network_policy_defaults(self):
        """No peers listed: clients from anywhere, egress still limited to what kpid needs."""
        values = {"networkPolicy": {"enabled": True},
                  "config": {"kafka": {"brokers": "k-0.k:9094, k-1.k:9095", "partitions": None},
                             "alertmanagers": ["https://am.example", "http://am2:9093/"]}}
        netpol = one(render_with(values), "NetworkPolicy")
        ingress, egress = netpol["spec"]["ingress"], netpol["spec"]["egress"]
        self.assertEqual(len(ingress), 2)
        self.assertNotIn("from", ingress[1])
        self.assertEqual({p["port"] for p in ingress[1]["ports"]}, {"http", "grpc"})
        # https without a port: 443.
        self.assertEqual([[p["port"] for p in r["ports"]] for r in egress],
                         [[53, 53], ["grpc"], [9094, 9095], [443, 9093]])
        self.assertNotIn("to", egress[0])
        self.assertNotIn("to", egress[2])
        # Embedded broker: no Kafka egress; kafkaPorts wins over the brokers.
        egress = one(render_with({"networkPolicy": {"enabled": True}}),
                     "NetworkPolicy")["spec"]["egress"]
        self.assertEqual([[p["port"] for p in r["ports"]] for r in egress], [[53, 53], ["grpc"]])
        values["networkPolicy"]["kafkaPorts"] = [19092]
        egress = one(render_with(values), "NetworkPolicy")["spec"]["egress"]
        self.assertEqual([p["port"] for p in egress[2]["ports"]], [19092])
        # A broker without a port (a name ending in digits is no port): the
        # policy cannot be written, so the render fails and says why.
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            yaml.safe_dump({"networkPolicy": {"enabled": True},
                            "config": {"kafka": {"brokers": "kafka1", "partitions": None}}}, f)
            f.flush()
            proc = render([f.name], expect_ok=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("kafka1", proc.stderr)
        self.assertIn("networkPolicy.kafkaPorts", proc.stderr)

    def test_peers_and_state_dir_overrides(self):
        static = {"addresses": ["kpid-a.example:50051", "kpid-b.example:50051"]}
        self.assertEqual(rendered_config(render_with({"config": {"peers": static}}))["peers"],
                         dict(static, timeout="2s", refresh_interval="30s"))
        own = {"dns": "kpid.other-ns.svc.cluster.local:50051"}
        self.assertEqual(rendered_config(render_with({"config": {"peers": own}}))["peers"]["dns"],
                         own["dns"])
        # null: no fan-out at all; state_dir "": no durable state.
        config = rendered_config(render_with({"config": {"peers": None, "state_dir": ""}}))
        self.assertNotIn("peers", config)
        self.assertNotIn("state_dir", config)
        config = rendered_config(render_with({"config": {"state_dir": "/var/lib/kpid/v2"}}))
        self.assertEqual(config["state_dir"], "/var/lib/kpid/v2")

    def test_mutual_tls_on_http_probes_by_tcp(self):
        values = {"tls": {"secretName": "kpid-tls", "grpc": False, "clientAuth": {"http": True}}}
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            yaml.safe_dump(values, f)
            f.flush()
            docs = render([f.name])
        sts = one(docs, "StatefulSet")
        container = sts["spec"]["template"]["spec"]["containers"][0]
        # The kubelet has no client certificate to present.
        for probe in ("livenessProbe", "readinessProbe"):
            self.assertEqual(container[probe]["tcpSocket"], {"port": "http"})
            self.assertNotIn("httpGet", container[probe])
        config = yaml.safe_load(one(docs, "ConfigMap", "kpid")["data"]["kpid.yaml"])
        self.assertEqual(config["http"]["tls"]["client_ca_file"], "tls/ca.crt")
        self.assertNotIn("tls", config["grpc"])
        out = self.check_config_with_kpid(docs, sts, one(docs, "ConfigMap", "kpid"))
        self.assertIn("ok", out)

    def test_config_change_rolls_pods(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            yaml.safe_dump({"config": {"retention": "14d"}}, f)
            f.flush()
            changed = one(render([f.name]), "StatefulSet")
        default = one(render(), "StatefulSet")
        key = "checksum/config"
        self.assertNotEqual(default["spec"]["template"]["metadata"]["annotations"][key],
                            changed["spec"]["template"]["metadata"]["annotations"][key])

    def test_embedded_broker_refuses_replicas(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            yaml.safe_dump({"replicaCount": 2}, f)
            f.flush()
            proc = render([f.name], expect_ok=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("config.kafka.brokers", proc.stderr)

    def test_labels_merge_without_duplicates(self):
        """Extra labels on top of the chart's are one map: a key set twice
        (PyYAML would keep the last silently; the loader here refuses it)
        takes the user's value, but never for the selector labels."""
        with self.assertRaisesRegex(yaml.YAMLError, "duplicate keys"):
            yaml.load("a: 1\na: 2\n", Loader=UniqueKeyLoader)
        docs = render_with({"commonLabels": {"app.kubernetes.io/part-of": "revenue"},
                            "podLabels": {"app.kubernetes.io/name": "other"},
                            "service": {"labels": {"app.kubernetes.io/component": "api"}},
                            "dashboards": {"enabled": True, "labels": {"grafana_dashboard": "0"}}})
        for d in docs:
            self.assertEqual(d["metadata"]["labels"]["app.kubernetes.io/part-of"], "revenue")
        sts = one(docs, "StatefulSet")
        self.assertTrue(selects(sts["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"]))
        self.assertEqual(one(docs, "Service", RELEASE)["metadata"]["labels"]
                         ["app.kubernetes.io/component"], "api")
        # The sidecar's label is what dashboards.label/labelValue say.
        dashboards = [d for d in docs if "grafana_dashboard" in d["metadata"]["labels"]]
        self.assertTrue(dashboards)
        self.assertEqual({d["metadata"]["labels"]["grafana_dashboard"] for d in dashboards}, {"1"})

    def test_existing_config_secret(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            yaml.safe_dump({"existingConfigSecret": "kpid-config"}, f)
            f.flush()
            docs = render([f.name])
        config_map = one(docs, "ConfigMap", "kpid")
        self.assertNotIn("kpid.yaml", config_map["data"])
        sources = one(docs, "StatefulSet")["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"]
        self.assertEqual(sources[0]["secret"]["name"], "kpid-config")
        self.assertEqual(sources[0]["secret"]["items"], [{"key": "kpid.yaml", "path": "kpid.yaml"}])


class HelmTest(unittest.TestCase):
    """Only where a helm binary exists: the real engine agrees with ours."""

    def setUp(self):
        self.helm = shutil.which("helm")
        if not self.helm:
            self.skipTest("no helm binary on PATH")

    def test_lint(self):
        for files in ([], [full_values_file()]):
            cmd = [self.helm, "lint", "--strict", chart_dir()] + [a for f in files for a in ("-f", f)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)

    def test_template_matches_renderer(self):
        for files in ([], [full_values_file()]):
            cmd = [self.helm, "template", "kpid", chart_dir(), "--namespace", "kpi"]
            cmd += [a for f in files for a in ("-f", f)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            key = lambda d: (d["kind"], d["metadata"]["name"])
            helm_docs = sorted((d for d in yaml.safe_load_all(proc.stdout) if d), key=key)
            self.assertEqual(helm_docs, sorted(render(files), key=key))


def dockerfile_stages(text):
    """A Dockerfile as stages of (INSTRUCTION, arguments), the global ARGs substituted.

    Continuation lines are joined and comments dropped, as docker does.
    """
    lines, pending = [], ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line:
            lines.append(line)
    global_args, stages = {}, []
    for line in lines:
        instr, _, args = line.partition(" ")
        instr, args = instr.upper(), args.strip()
        if instr == "ARG" and not stages:
            name, _, default = args.partition("=")
            global_args[name] = default
            continue
        if instr == "FROM":
            args = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], args)
            stages.append([])
        stages[-1].append((instr, args))
    return stages


def deps_packages():
    """The PACKAGES array of scripts/deps, as bash reads it (comments and all)."""
    script = os.path.join(ARGS.source, "scripts", "deps")
    proc = subprocess.run(["bash", "-c", 'eval "$(sed -n "/^PACKAGES=(/,/^)/p" "$1")"; '
                           'printf "%s\\n" "${PACKAGES[@]}"', "bash", script],
                          capture_output=True, text=True, check=True, timeout=60)
    return proc.stdout.split()


def apt_installed(run):
    """Packages named by the apt-get/apt install commands of a RUN line."""
    packages = []
    for command in re.split(r"&&|;|\|\|", run):
        words = command.split()
        if len(words) > 2 and words[0] in ("apt-get", "apt") and "install" in words:
            packages += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return packages


class DockerfileTest(unittest.TestCase):
    """No Docker engine runs here (`docker` is only a client): the image cannot
    be built, so its recipe is checked statically, hadolint-style, and
    against the chart that runs it."""

    def setUp(self):
        with open(os.path.join(ARGS.source, "Dockerfile")) as f:
            self.text = f.read()
        self.stages = dockerfile_stages(self.text)
        self.values = load_yaml(os.path.join(chart_dir(), "values.yaml"))

    def instructions(self, stage, instr):
        return [args for i, args in self.stages[stage] if i == instr]

    def test_shape(self):
        self.assertEqual(len(self.stages), 2, "builder + runtime")
        builder_from, runtime_from = (self.instructions(i, "FROM")[0] for i in (0, 1))
        self.assertRegex(builder_from, r"^debian:\S+ AS builder$")
        self.assertRegex(runtime_from, r"^debian:\S+-slim$")
        self.assertIn("scripts/build", " ".join(self.instructions(0, "RUN")))
        self.assertEqual(self.instructions(1, "ENTRYPOINT"), ['["/usr/local/bin/kpid"]'])
        # The config path the chart mounts (it passes --config itself too).
        self.assertEqual(self.instructions(1, "CMD"),
                         ['["--config=/etc/kpid/kpid.yaml"]'])

    def test_base_images_pinned(self):
        """A point release (or digest), the same in both stages: the runtime
        stage installs the builder's library packages by name (their ABI)."""
        releases = []
        for stage in self.stages:
            image = self.instructions(self.stages.index(stage), "FROM")[0].split()[0]
            self.assertNotRegex(image, r":latest\b|^[^:@]+$", "unpinned base image")
            match = re.fullmatch(r"debian:(\d+\.\d+)(-slim)?(@sha256:[0-9a-f]{64})?", image)
            self.assertIsNotNone(match, f"{image}: not a Debian point release")
            releases.append(match.group(1))
        self.assertEqual(len(set(releases)), 1, releases)

    def test_builder_installs_exactly_scripts_deps(self):
        """The builder runs scripts/deps itself (no copy of its list) and
        installs nothing else."""
        runs = self.instructions(0, "RUN")
        self.assertTrue(any(re.match(r"scripts/deps(\s|$)", r) for r in runs), runs)
        self.assertIn("scripts/deps scripts/deps", self.instructions(0, "COPY")[0])
        installed = set(deps_packages())
        for run in runs:
            installed |= set(apt_installed(run))
        self.assertEqual(installed, set(deps_packages()))
        # The libraries the Conventions name, from Debian.
        for must in ("libabsl-dev", "libprotobuf-dev", "libgrpc++-dev", "prometheus-cpp-dev",
                     "librdkafka-dev", "libyaml-cpp-dev", "libcpp-httplib-dev"):
            self.assertIn(must, installed)

    def test_runtime_stage_has_runtime_libraries_only(self):
        runs = self.instructions(1, "RUN")
        installs = [r for r in runs if apt_installed(r)]
        self.assertEqual(len(installs), 1, runs)
        self.assertEqual(apt_installed(installs[0]),
                         ["ca-certificates", "$(cat", "/tmp/runtime-packages)"])
        self.assertIn("--no-install-recommends", installs[0])
        self.assertIn("rm -rf /var/lib/apt/lists/*", installs[0])
        copies = self.instructions(1, "COPY")
        self.assertTrue(all(c.startswith("--from=builder /out/") for c in copies), copies)
        # Every binary built into /out is in the image, and its libraries too.
        build = " ".join(self.instructions(0, "RUN"))
        built = re.search(r"install -m 0755 ((?:build/\S+ )+)/out/", build).group(1).split()
        binaries = ["/out/" + os.path.basename(b) for b in built]
        self.assertIn(f"runtime-packages {' '.join(binaries)} >", build)
        self.assertIn(f"--from=builder {' '.join(binaries)} /usr/local/bin/", copies)
        self.assertEqual([os.path.basename(b) for b in built], ["kpid", "kpictl", "kpi-loadgen"])

    def test_hygiene(self):
        self.assertNotRegex(self.text, r"(curl|wget)[^\n|]*\|\s*(ba|da)?sh", "curl | sh")
        self.assertEqual([a for s in range(2) for a in self.instructions(s, "ADD")], [])
        self.assertNotIn("sudo ", " ".join(a for s in range(2) for a in self.instructions(s, "RUN")))
        with open(os.path.join(ARGS.source, ".dockerignore")) as f:
            ignored = f.read().split()
        for path in (".git", "build", "build-*"):
            self.assertIn(path, ignored, "the build context would carry it")

    def test_matches_chart(self):
        """User, ports and state path are the ones the chart assumes."""
        pod_sc = self.values["podSecurityContext"]
        users = self.instructions(1, "USER")
        self.assertEqual(users[-1], f"{pod_sc['runAsUser']}:{pod_sc['runAsGroup']}")
        self.assertNotEqual(pod_sc["runAsUser"], 0)
        created = " ".join(self.instructions(1, "RUN"))
        self.assertIn(f"--uid {pod_sc['runAsUser']}", created)
        self.assertIn(f"--gid {pod_sc['runAsGroup']}", created)
        exposed = {int(p.split("/")[0]) for e in self.instructions(1, "EXPOSE") for p in e.split()}
        self.assertEqual(exposed, set(self.values["ports"].values()))
        volumes = [v for e in self.instructions(1, "VOLUME") for v in json.loads(e)]
        self.assertEqual(volumes, [self.values["persistence"]["mountPath"]])

    def test_runtime_packages_exist(self):
        """deploy/docker/runtime-packages on a real kpid: every package it names exists."""
        if not ARGS.kpid:
            self.skipTest("no --kpid")
        if not (shutil.which("dpkg") and shutil.which("apt-cache")):
            self.skipTest("no dpkg/apt-cache")
        script = os.path.join(ARGS.source, "deploy", "docker", "runtime-packages")
        proc = subprocess.run([script, ARGS.kpid], capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        packages = proc.stdout.split()
        # Libraries kpid cannot run without: a list missing them is wrong.
        # (Not prometheus-cpp: kpid renders /metrics itself and uses only its
        # header-only types, so the linker drops the shared library.)
        for must in ("librdkafka1", "libprotobuf32", "libabsl20220623"):
            self.assertIn(must, packages)
        self.assertEqual([p for p in packages if p.endswith("-dev")], [])
        shown = subprocess.run(["apt-cache", "show", "--no-all-versions"] + packages,
                               capture_output=True, text=True, timeout=120)
        self.assertEqual(shown.returncode, 0, shown.stderr)
        self.assertEqual(sorted(set(re.findall(r"(?m)^Package: (\S+)", shown.stdout))),
                         sorted(set(packages)))


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True, help="repository root")
    parser.add_argument("--render", required=True, help="the helm-render binary")
    parser.add_argument("--kpid", help="kpid binary, for check-config")
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
