// helm-render: renders a Helm chart the way `helm template` does, for tests on
// machines without a helm binary.
//
//	helm-render --chart deploy/helm/kpid [--values extra.yaml]... [--release kpid] [--namespace ns]
//
// It uses the engine Helm itself uses: Go's text/template with the sprig
// function library and sigs.k8s.io/yaml (both from Debian packages, built in
// GOPATH mode, no network). It provides the Helm additions a chart relies on:
// include, tpl, required, fail (sprig), toYaml, fromYaml, fromYamlArray,
// toJson, fromJson, .Values (values.yaml coalesced with --values files, a
// null deleting a key, as Helm does), .Release, .Chart (Chart.yaml),
// .Capabilities (a fixed, minimal cluster), .Template and .Files (Get,
// GetBytes, Glob, Lines, AsConfig, AsSecrets). Not provided: lookup (no
// cluster), subcharts, --set.
//
// Output: every rendered template but partials (_*) and NOTES.txt, each as
// "---\n# Source: <chart>/templates/<file>\n<text>", in file name order; a
// template that renders to whitespace only is left out. NOTES.txt is rendered
// too, so its errors count, but not printed. Any error exits 1 with the
// message on stderr.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	// GOPATH mode: Debian installs sprig v3 without the /v3 directory.
	sprig "github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

// Helm stops include/tpl recursion at this depth.
const recursionMax = 1000

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// Files is .Files: the chart's files other than templates/ and values.yaml.
type Files map[string][]byte

func (f Files) GetBytes(name string) []byte { return f[name] }
func (f Files) Get(name string) string      { return string(f[name]) }

// Glob uses path.Match, which (unlike Helm's gobwas/glob) has no "**".
func (f Files) Glob(pattern string) Files {
	out := Files{}
	for name, data := range f {
		if ok, _ := path.Match(pattern, name); ok {
			out[name] = data
		}
	}
	return out
}

func (f Files) Lines(name string) []string {
	s := strings.TrimSuffix(string(f[name]), "\n")
	if s == "" {
		return []string{}
	}
	return strings.Split(s, "\n")
}

func (f Files) AsConfig() string {
	m := map[string]string{}
	for name, data := range f {
		m[path.Base(name)] = string(data)
	}
	return toYAML(m)
}

func (f Files) AsSecrets() string {
	m := map[string]string{}
	for name, data := range f {
		m[path.Base(name)] = base64.StdEncoding.EncodeToString(data)
	}
	return toYAML(m)
}

// APIVersions answers .Capabilities.APIVersions.Has for a cluster that
// serves only the built-in groups, as `helm template` without a cluster.
type APIVersions []string

func (a APIVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

type KubeVersion struct{ Version, Major, Minor string }

func (k KubeVersion) String() string     { return k.Version }
func (k KubeVersion) GitVersion() string { return k.Version }

type Capabilities struct {
	KubeVersion KubeVersion
	APIVersions APIVersions
}

// Chart is .Chart: the fields of Chart.yaml a template may read.
type Chart struct {
	APIVersion  string   `json:"apiVersion"`
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	AppVersion  string   `json:"appVersion"`
	Description string   `json:"description"`
	Type        string   `json:"type"`
	KubeVersion string   `json:"kubeVersion"`
	Home        string   `json:"home"`
	Sources     []string `json:"sources"`
	Keywords    []string `json:"keywords"`
	Icon        string   `json:"icon"`
}

type Release struct {
	Name, Namespace, Service string
	IsInstall, IsUpgrade     bool
	Revision                 int
}

type TemplateInfo struct{ Name, BasePath string }

func toYAML(v interface{}) string {
	data, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromYAMLArray(s string) []interface{} {
	a := []interface{}{}
	if err := yaml.Unmarshal([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

// coalesce merges src over dst as Helm merges user values over the chart's:
// maps merge key by key, anything else replaces, and a null deletes the key.
func coalesce(dst, src map[string]interface{}) map[string]interface{} {
	for k, sv := range src {
		if sv == nil {
			delete(dst, k)
			continue
		}
		sm, sIsMap := sv.(map[string]interface{})
		dm, dIsMap := dst[k].(map[string]interface{})
		if sIsMap && dIsMap {
			dst[k] = coalesce(dm, sm)
		} else {
			dst[k] = sv
		}
	}
	return dst
}

func readYAMLMap(file string) (map[string]interface{}, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	return m, nil
}

type chartFiles struct {
	templates map[string]string // name relative to the chart dir -> text
	files     Files
}

func loadChart(dir string) (*chartFiles, error) {
	c := &chartFiles{templates: map[string]string{}, files: Files{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "templates/") {
			c.templates[rel] = string(data)
		} else if rel != "values.yaml" && rel != "Chart.yaml" {
			c.files[rel] = data
		}
		return nil
	})
	return c, err
}

func render(chartDir string, valueFiles []string, release Release) (string, error) {
	var chart Chart
	chartYAML, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return "", err
	}
	if err := yaml.Unmarshal(chartYAML, &chart); err != nil {
		return "", fmt.Errorf("Chart.yaml: %v", err)
	}
	if chart.Name == "" {
		return "", errors.New("Chart.yaml: name is required")
	}
	values, err := readYAMLMap(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return "", err
	}
	for _, f := range valueFiles {
		override, err := readYAMLMap(f)
		if err != nil {
			return "", err
		}
		values = coalesce(values, override)
	}
	c, err := loadChart(chartDir)
	if err != nil {
		return "", err
	}

	root := template.New(chart.Name)
	// As Helm without --strict: a missing key renders as "" rather than failing.
	root.Option("missingkey=zero")
	includeDepth := map[string]int{}
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["fromYamlArray"] = fromYAMLArray
	funcs["toJson"] = toJSON
	funcs["fromJson"] = fromJSON
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return v, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return v, errors.New(msg)
		}
		return v, nil
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		if includeDepth[name] > recursionMax {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		includeDepth[name]++
		defer func() { includeDepth[name]-- }()
		var buf strings.Builder
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", fmt.Errorf("tpl: %v", err)
		}
		var buf strings.Builder
		if err := t.Execute(&buf, data); err != nil {
			return "", fmt.Errorf("tpl: %v", err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	root.Funcs(funcs)

	names := make([]string, 0, len(c.templates))
	for name := range c.templates {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		full := chart.Name + "/" + name
		if _, err := root.New(full).Parse(c.templates[name]); err != nil {
			return "", err
		}
	}

	var out strings.Builder
	for _, name := range names {
		base := path.Base(name)
		if strings.HasPrefix(base, "_") {
			continue
		}
		full := chart.Name + "/" + name
		top := map[string]interface{}{
			"Values":  values,
			"Release": release,
			"Chart":   chart,
			"Files":   c.files,
			"Capabilities": Capabilities{
				KubeVersion: KubeVersion{Version: "v1.28.0", Major: "1", Minor: "28"},
				APIVersions: APIVersions{"v1", "apps/v1", "batch/v1", "policy/v1",
					"networking.k8s.io/v1", "rbac.authorization.k8s.io/v1"},
			},
			"Template": TemplateInfo{Name: full, BasePath: chart.Name + "/templates"},
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, full, top); err != nil {
			return "", err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if base == "NOTES.txt" || strings.TrimSpace(text) == "" {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", full, strings.TrimRight(text, "\n"))
	}
	return out.String(), nil
}

func main() {
	chartDir := flag.String("chart", "", "chart directory")
	releaseName := flag.String("release", "kpid", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	var valueFiles multiFlag
	flag.Var(&valueFiles, "values", "values file merged over the chart's values.yaml (repeatable)")
	flag.Parse()
	if *chartDir == "" {
		fmt.Fprintln(os.Stderr, "usage: helm-render --chart DIR [--values FILE]... [--release NAME] [--namespace NS]")
		os.Exit(2)
	}
	out, err := render(*chartDir, valueFiles, Release{
		Name: *releaseName, Namespace: *namespace, Service: "Helm", IsInstall: true, Revision: 1,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helm-render:", err)
		os.Exit(1)
	}
	fmt.Print(out)
}
