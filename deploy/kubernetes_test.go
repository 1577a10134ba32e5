package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/contoso-secops/mde-offboard/internal/app"
)

// rendered is a kustomization's output, decoded strictly into the
// Kubernetes API types.
type rendered struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	configMaps  []*corev1.ConfigMap
	accounts    []*corev1.ServiceAccount
	budgets     []*policyv1.PodDisruptionBudget
	policies    []*networkingv1.NetworkPolicy
}

// renderKustomization runs kustomize on dir (on disk, no network) and
// decodes every object it yields, refusing unknown fields and kinds.
func renderKustomization(t *testing.T, dir string) *rendered {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatal(err)
	}
	r := &rendered{}
	for _, res := range m.Resources() {
		data, err := res.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var target any
		switch gvk := res.GetGvk(); gvk.ApiVersion() + "/" + gvk.Kind {
		case "apps/v1/Deployment":
			target = appendNew(&r.deployments)
		case "v1/Service":
			target = appendNew(&r.services)
		case "v1/ConfigMap":
			target = appendNew(&r.configMaps)
		case "v1/ServiceAccount":
			target = appendNew(&r.accounts)
		case "policy/v1/PodDisruptionBudget":
			target = appendNew(&r.budgets)
		case "networking.k8s.io/v1/NetworkPolicy":
			target = appendNew(&r.policies)
		default:
			t.Fatalf("%s: unexpected kind %s", res.GetName(), gvk)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(target); err != nil {
			t.Errorf("%s %s: %v", res.GetKind(), res.GetName(), err)
		}
	}
	return r
}

func appendNew[T any](list *[]*T) *T {
	v := new(T)
	*list = append(*list, v)
	return v
}

func (r *rendered) service(t *testing.T, name string) *corev1.Service {
	t.Helper()
	for _, s := range r.services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no Service %s", name)
	return nil
}

// TestKustomization renders deploy/kubernetes and checks what the kit
// promises: the generated tenants ConfigMap, memory and GOMEMLIMIT, one
// projected volume holding every tenant's credential, the disruption
// budget, the spread over nodes, the network policy and the identity.
func TestKustomization(t *testing.T) {
	r := renderKustomization(t, "kubernetes")
	if len(r.deployments) != 1 || len(r.configMaps) != 1 || len(r.accounts) != 1 || len(r.budgets) != 1 || len(r.policies) != 1 {
		t.Fatalf("want one Deployment, ConfigMap, ServiceAccount, PodDisruptionBudget and NetworkPolicy; got %d, %d, %d, %d, %d",
			len(r.deployments), len(r.configMaps), len(r.accounts), len(r.budgets), len(r.policies))
	}
	d := r.deployments[0]
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]

	t.Run("tenants ConfigMap rolls the pods", func(t *testing.T) {
		cm := r.configMaps[0]
		if !strings.HasPrefix(cm.Name, "mde-offboard-config-") {
			t.Errorf("ConfigMap %s carries no content hash", cm.Name)
		}
		if volume(t, pod, "config").ConfigMap.Name != cm.Name {
			t.Errorf("the config volume names %s, not the generated %s", volume(t, pod, "config").ConfigMap.Name, cm.Name)
		}
		plain, err := os.ReadFile("worker.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data["worker.yaml"] != string(plain) {
			t.Error("kubernetes/worker.yaml differs from deploy/worker.yaml: copy it")
		}
	})
	t.Run("memory", func(t *testing.T) { checkMemory(t, c) })
	t.Run("credentials in one projected volume", func(t *testing.T) { checkCredentials(t, r.configMaps[0], pod, c) })
	t.Run("disruption budget and spread", func(t *testing.T) {
		sel := d.Spec.Selector.MatchLabels
		pdb := r.budgets[0]
		if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
			t.Errorf("PodDisruptionBudget maxUnavailable %v, want 1", pdb.Spec.MaxUnavailable)
		}
		checkSelects(t, "PodDisruptionBudget", pdb.Spec.Selector.MatchLabels, sel)
		// A replica that is not ready (NATS away, its clock off) takes no
		// request: with both not ready, the default policy would refuse
		// to evict either, and a node's drain would wait for NATS.
		if p := pdb.Spec.UnhealthyPodEvictionPolicy; p == nil || *p != policyv1.AlwaysAllow {
			t.Errorf("PodDisruptionBudget unhealthyPodEvictionPolicy %v, want AlwaysAllow: a drain must not wait for replicas that are not ready", p)
		}
		if len(pod.TopologySpreadConstraints) == 0 || pod.TopologySpreadConstraints[0].TopologyKey != corev1.LabelHostname {
			t.Fatal("no topology spread over nodes")
		}
		checkSelects(t, "topology spread", pod.TopologySpreadConstraints[0].LabelSelector.MatchLabels, sel)
	})
	t.Run("scraped once, through the ServiceMonitor", func(t *testing.T) {
		// A Prometheus that also discovers pods by their prometheus.io/*
		// annotations would scrape every replica a second time, under
		// another job, and double every counter the alerts sum.
		for k := range d.Spec.Template.Annotations {
			if strings.HasPrefix(k, "prometheus.io/") {
				t.Errorf("pod annotation %s: the ServiceMonitor (job mde-offboard) scrapes the pods", k)
			}
		}
	})
	t.Run("network policy", func(t *testing.T) { checkNetworkPolicy(t, r.policies[0], d) })
	t.Run("identity", func(t *testing.T) {
		sa := r.accounts[0]
		if pod.ServiceAccountName != sa.Name {
			t.Errorf("pod runs as %q, not the ServiceAccount %s", pod.ServiceAccountName, sa.Name)
		}
		if sa.Annotations["azure.workload.identity/client-id"] == "" {
			t.Error("the ServiceAccount lacks the workload identity client-id annotation")
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Error("the pod mounts a Kubernetes API token it does not use")
		}
	})
	t.Run("replica id is the pod's name", func(t *testing.T) {
		for _, e := range c.Env {
			if e.Name == "MDE_OFFBOARD_REPLICA_ID" {
				if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
					t.Errorf("MDE_OFFBOARD_REPLICA_ID is not taken from metadata.name: %+v", e)
				}
				return
			}
		}
		t.Error("no MDE_OFFBOARD_REPLICA_ID: a restarted container would wait out its dead self's announcement")
	})
	t.Run("stops within its grace period", func(t *testing.T) { checkGracePeriod(t, pod, c) })
	t.Run("environment uses the MDE_OFFBOARD_ prefix", func(t *testing.T) {
		for _, e := range c.Env {
			if e.Name != "GOMEMLIMIT" && !strings.HasPrefix(e.Name, "MDE_OFFBOARD_") {
				t.Errorf("environment variable %s: use MDE_OFFBOARD_%s", e.Name, e.Name)
			}
		}
	})
}

// checkGracePeriod: the pod's termination grace period covers the
// worker's whole stop, --shutdown-timeout for the requests under way and
// app.StopReserve for what follows; a shorter one has the kubelet kill
// the worker while it still stores results and drains NATS.
func checkGracePeriod(t *testing.T, pod corev1.PodSpec, c corev1.Container) {
	shutdown := app.DefaultShutdownTimeout
	for _, e := range c.Env {
		if e.Name == "MDE_OFFBOARD_SHUTDOWN_TIMEOUT" {
			d, err := time.ParseDuration(e.Value)
			if err != nil {
				t.Fatalf("MDE_OFFBOARD_SHUTDOWN_TIMEOUT %q: %v", e.Value, err)
			}
			shutdown = d
		}
	}
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--shutdown-timeout="); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("%s: %v", a, err)
			}
			shutdown = d
		}
	}
	grace := 30 * time.Second // Kubernetes' default
	if pod.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	}
	if need := shutdown + app.StopReserve; grace < need {
		t.Errorf("terminationGracePeriodSeconds %v is shorter than the worker's stop, --shutdown-timeout %v + %v", grace, shutdown, app.StopReserve)
	}
}

func volume(t *testing.T, pod corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	for _, v := range pod.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no volume %s", name)
	return corev1.Volume{}
}

func checkSelects(t *testing.T, what string, sel, podLabels map[string]string) {
	t.Helper()
	if len(sel) == 0 {
		t.Errorf("%s selects everything", what)
	}
	for k, v := range sel {
		if podLabels[k] != v {
			t.Errorf("%s selects %s=%s, which the worker's pods do not carry", what, k, v)
		}
	}
}

// checkMemory: a request and a limit, and GOMEMLIMIT at about 90% of the
// limit.
func checkMemory(t *testing.T, c corev1.Container) {
	req, lim := c.Resources.Requests.Memory(), c.Resources.Limits.Memory()
	if req.IsZero() || lim.IsZero() || req.Cmp(*lim) > 0 {
		t.Fatalf("memory request %s and limit %s", req, lim)
	}
	var gomemlimit string
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			gomemlimit = e.Value
		}
	}
	// GOMEMLIMIT takes B, KiB, MiB, GiB; a Kubernetes quantity the same
	// without the B.
	q, err := resource.ParseQuantity(strings.TrimSuffix(gomemlimit, "B"))
	if err != nil {
		t.Fatalf("GOMEMLIMIT %q: %v", gomemlimit, err)
	}
	if ratio := float64(q.Value()) / float64(lim.Value()); ratio < 0.85 || ratio > 0.95 {
		t.Errorf("GOMEMLIMIT %s is %.0f%% of the limit %s, want about 90%%", gomemlimit, ratio*100, lim)
	}
}

// checkCredentials: every credential file the tenants file names is an
// item of the one projected volume, mounted read-only.
func checkCredentials(t *testing.T, cm *corev1.ConfigMap, pod corev1.PodSpec, c corev1.Container) {
	var f struct {
		Tenants []map[string]any `yaml:"tenants"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["worker.yaml"]), &f); err != nil {
		t.Fatal(err)
	}
	creds := volume(t, pod, "credentials")
	if creds.Projected == nil {
		t.Fatal("the credentials volume is not projected")
	}
	var mount *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if m.Name == "credentials" {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil || !mount.ReadOnly {
		t.Fatal("the credentials volume is not mounted read-only")
	}
	provided := map[string]bool{}
	for _, src := range creds.Projected.Sources {
		if src.Secret == nil {
			continue
		}
		for _, it := range src.Secret.Items {
			provided[path.Join(mount.MountPath, it.Path)] = true
		}
	}
	for _, tenant := range f.Tenants {
		for _, key := range []string{"clientSecretFile", "certificateFile"} {
			if file, ok := tenant[key].(string); ok && file != "" && !provided[file] {
				t.Errorf("tenant %v: %s %s is not in the credentials volume", tenant["name"], key, file)
			}
		}
	}
}

// checkNetworkPolicy: ingress on the metrics port from the monitoring
// namespace only; egress to NATS, 443 and DNS only.
func checkNetworkPolicy(t *testing.T, np *networkingv1.NetworkPolicy, d *appsv1.Deployment) {
	checkSelects(t, "NetworkPolicy", np.Spec.PodSelector.MatchLabels, d.Spec.Template.Labels)
	if len(np.Spec.PolicyTypes) != 2 {
		t.Errorf("policy types %v, want Ingress and Egress", np.Spec.PolicyTypes)
	}
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 1 ||
		np.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" ||
		np.Spec.Ingress[0].Ports[0].Port.IntValue() != 9090 {
		t.Errorf("ingress %+v: want port 9090 from the monitoring namespace only", np.Spec.Ingress)
	}
	ports := map[int]bool{}
	for _, rule := range np.Spec.Egress {
		for _, p := range rule.Ports {
			ports[p.Port.IntValue()] = true
		}
		if len(rule.Ports) == 0 {
			t.Error("an egress rule allows every port")
		}
	}
	for _, p := range []int{4222, 443, 53} {
		if !ports[p] {
			t.Errorf("no egress to port %d", p)
		}
	}
	if len(ports) != 3 {
		t.Errorf("egress ports %v, want NATS, 443 and DNS only", ports)
	}
}

// TestNetworkPolicyOptionalRules checks the egress rules networkpolicy.yaml
// keeps commented out, for the clusters that need them: DNS through
// NodeLocal DNSCache, and the Azure instance metadata service for
// managedIdentity. Uncommented, each must be a valid rule that opens one
// address on its port and nothing more.
func TestNetworkPolicyOptionalRules(t *testing.T) {
	data, err := os.ReadFile("kubernetes/networkpolicy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// A commented rule starts with "    # - " under egress: and goes on
	// with lines "    #   ..."; uncomment those, keep the rest.
	var b strings.Builder
	optional, in := 0, false
	for line := range strings.SplitAfterSeq(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "    # - "):
			optional++
			in = true
			line = "    " + strings.TrimPrefix(line, "    # ")
		case in && strings.HasPrefix(line, "    #   "):
			line = "    " + strings.TrimPrefix(line, "    # ")
		default:
			in = false
		}
		b.WriteString(line)
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(b.String()), &doc); err != nil {
		t.Fatalf("networkpolicy.yaml with its optional rules uncommented: %v", err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var np networkingv1.NetworkPolicy
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&np); err != nil {
		t.Fatalf("networkpolicy.yaml with its optional rules uncommented: %v", err)
	}
	want := map[string][]string{
		"169.254.20.10/32":   {"UDP/53", "TCP/53"}, // NodeLocal DNSCache
		"169.254.169.254/32": {"TCP/80"},           // instance metadata service
	}
	if optional != len(want) {
		t.Errorf("%d commented rules, want %d (NodeLocal DNSCache, instance metadata service)", optional, len(want))
	}
	found := map[string]bool{}
	for _, rule := range np.Spec.Egress {
		for _, peer := range rule.To {
			if peer.IPBlock == nil {
				continue
			}
			ports, ok := want[peer.IPBlock.CIDR]
			if !ok {
				t.Errorf("egress to %s: not a documented optional rule", peer.IPBlock.CIDR)
				continue
			}
			found[peer.IPBlock.CIDR] = true
			if len(rule.To) != 1 || len(peer.IPBlock.Except) != 0 {
				t.Errorf("egress to %s: the rule names other peers too", peer.IPBlock.CIDR)
			}
			var got []string
			for _, p := range rule.Ports {
				proto := corev1.ProtocolTCP // the default
				if p.Protocol != nil {
					proto = *p.Protocol
				}
				got = append(got, string(proto)+"/"+p.Port.String())
			}
			if !slices.Equal(got, ports) {
				t.Errorf("egress to %s on %v, want %v", peer.IPBlock.CIDR, got, ports)
			}
		}
	}
	for cidr := range want {
		if !found[cidr] {
			t.Errorf("no commented egress rule to %s", cidr)
		}
	}
}
