{{/* Names: at most 63 characters (DNS label), as Kubernetes requires. */}}
{{- define "kpid.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kpid.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The headless Service: peers and StatefulSet pod DNS (<pod>.<this>). */}}
{{- define "kpid.headlessName" -}}
{{- printf "%s-headless" (include "kpid.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "kpid.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: never change across upgrades (a StatefulSet selector is immutable). */}}
{{- define "kpid.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kpid.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- /*
An object's labels as one map, so no key appears twice (which the API
server refuses): the chart's, then commonLabels, then the object's own
extra labels (the argument: list <root> <extra map>) override; the selector
labels always win, or an extra label could unselect the pods.
*/ -}}
{{- define "kpid.labelsWith" -}}
{{- $root := index . 0 }}
{{- $labels := dict "helm.sh/chart" (include "kpid.chart" $root) "app.kubernetes.io/version" (toString ($root.Values.image.tag | default $root.Chart.AppVersion)) "app.kubernetes.io/component" "kpi-daemon" "app.kubernetes.io/part-of" "kpid" "app.kubernetes.io/managed-by" $root.Release.Service }}
{{- $labels = mergeOverwrite $labels (deepCopy ($root.Values.commonLabels | default dict)) (deepCopy (index . 1 | default dict)) (include "kpid.selectorLabels" $root | fromYaml) }}
{{- toYaml $labels }}
{{- end }}

{{- define "kpid.labels" -}}
{{- include "kpid.labelsWith" (list . dict) }}
{{- end }}

{{- define "kpid.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kpid.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kpid.image" -}}
{{- $repository := required "image.repository is required" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Where the config volume is mounted; kpid.yaml and rules/ live there. */}}
{{- define "kpid.configDir" -}}/etc/kpid{{- end }}

{{/* The kpid rule files (kpid format, evaluated by kpid), name -> text. */}}
{{- define "kpid.alertRuleFiles" -}}
{{- $files := dict }}
{{- if .Values.alertRules.bundled }}
{{- range $path, $data := .Files.Glob "files/rules/*.yaml" }}
{{- $_ := set $files (base $path) (toString $data) }}
{{- end }}
{{- end }}
{{- range $name, $rules := .Values.alertRules.extra }}
{{- $_ := set $files $name (toYaml $rules) }}
{{- end }}
{{- toYaml $files }}
{{- end }}

{{/*
kpid's configuration: config from values, with the keys the chart must own
set by the chart, so the ports probed and served match what kpid listens on
and the rule globs match where the rules are mounted.
*/}}
{{- /* A listener's tls section, paths relative to kpid.yaml; the argument: clientAuth. */ -}}
{{- define "kpid.tlsFiles" -}}
cert_file: tls/tls.crt
key_file: tls/tls.key
{{- if . }}
client_ca_file: tls/ca.crt
{{- end }}
{{- end }}

{{- /* HTTPS when the http listener serves TLS. */ -}}
{{- define "kpid.httpScheme" -}}
{{- if and .Values.tls.secretName .Values.tls.http }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{- /*
Where peers find each other: the headless Service's name, whose A/AAAA
records are every pod (ready or not), with the gRPC port. kpid skips the
record that is itself by its replica_id (the host name, i.e. the pod name).
*/ -}}
{{- define "kpid.peersDns" -}}
{{- printf "%s.%s.svc.%s:%d" (include "kpid.headlessName" .) .Release.Namespace .Values.clusterDomain (int .Values.ports.grpc) }}
{{- end }}

{{- /* The Kafka ports of config.kafka.brokers (host:port,...); none for "embedded". */ -}}
{{- define "kpid.kafkaPorts" -}}
{{- $ports := dict }}
{{- $brokers := toString (dig "kafka" "brokers" "embedded" .Values.config) }}
{{- if ne $brokers "embedded" }}
{{- range splitList "," $brokers }}
{{- $port := regexFind ":[0-9]+$" (trim .) | trimPrefix ":" }}
{{- $_ := set $ports (required (printf "config.kafka.brokers: %q has no :port (or set networkPolicy.kafkaPorts)" (trim .)) $port) true }}
{{- end }}
{{- end }}
{{- keys $ports | sortAlpha | join "," }}
{{- end }}

{{- /* The ports of config.alertmanagers' URLs (80/443 when not given). */ -}}
{{- define "kpid.alertmanagerPorts" -}}
{{- $ports := dict }}
{{- range (dig "alertmanagers" list .Values.config) }}
{{- $url := urlParse . }}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" }}
{{- $_ := set $ports ($port | default (ternary "443" "80" (eq $url.scheme "https"))) true }}
{{- end }}
{{- keys $ports | sortAlpha | join "," }}
{{- end }}

{{- define "kpid.config" -}}
{{- $config := deepCopy .Values.config }}
{{- /* Durable state on the state volume unless given; "" turns it off. */ -}}
{{- if not (hasKey $config "state_dir") }}
{{- $_ := set $config "state_dir" .Values.persistence.mountPath }}
{{- else if eq (toString $config.state_dir) "" }}
{{- $_ := unset $config "state_dir" }}
{{- end }}
{{- /* Peers for GetSnapshot's global scope: the headless Service unless a
static list or another name is given; config.peers: null turns it off. */ -}}
{{- with $config.peers }}
{{- if not .addresses }}
{{- $_ := unset . "addresses" }}
{{- end }}
{{- if .dns }}
{{- else if hasKey . "addresses" }}
{{- $_ := unset . "dns" }}
{{- else }}
{{- $_ := set . "dns" (include "kpid.peersDns" $) }}
{{- end }}
{{- end }}
{{- $http := dict "listen" (printf "0.0.0.0:%d" (int .Values.ports.http)) }}
{{- $grpc := dict "listen" (printf "0.0.0.0:%d" (int .Values.ports.grpc)) }}
{{- if .Values.tls.secretName }}
{{- if .Values.tls.http }}
{{- $_ := set $http "tls" (include "kpid.tlsFiles" .Values.tls.clientAuth.http | fromYaml) }}
{{- end }}
{{- if .Values.tls.grpc }}
{{- $_ := set $grpc "tls" (include "kpid.tlsFiles" .Values.tls.clientAuth.grpc | fromYaml) }}
{{- /* Peers are replicas: they verify each other against the Secret's CA
and, with mutual TLS, present the pod's own certificate. */ -}}
{{- if and $config.peers (not (hasKey $config.peers "tls")) }}
{{- $peerTls := dict "ca_file" "tls/ca.crt" }}
{{- if .Values.tls.clientAuth.grpc }}
{{- $_ := set $peerTls "cert_file" "tls/tls.crt" }}
{{- $_ := set $peerTls "key_file" "tls/tls.key" }}
{{- end }}
{{- $_ := set $config.peers "tls" $peerTls }}
{{- end }}
{{- end }}
{{- end }}
{{- $managed := dict "http" $http "grpc" $grpc }}
{{- if fromYaml (include "kpid.alertRuleFiles" .) }}
{{- $_ := set $managed "rules" (list "rules/*.yaml") }}
{{- end }}
{{- $config = mergeOverwrite $config $managed }}
{{- $kafka := $config.kafka | default dict }}
{{- if and (eq (toString ($kafka.brokers | default "embedded")) "embedded") (gt (int .Values.replicaCount) 1) }}
{{- fail "config.kafka.brokers is \"embedded\" (a demo broker inside each pod): with replicaCount > 1 every replica would count its own, different events. Set config.kafka.brokers to your Kafka cluster." }}
{{- end }}
{{- toYaml $config }}
{{- end }}
