package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// A replica that does not answer but announced other guards than the
// one that answers: the line that says the guards differ names both
// replicas, the silent one by the digest it announced. Before, it named
// the answering replica alone, as if one replica held other guards.
func TestGuardsDifferWithAReplicaNotAnswering(t *testing.T) {
	e := newEnv(t, 0)
	e.startReplica("replica-a", guardsDC)
	kv, err := e.js.KeyValue(t.Context(), queue.BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "replica-old", []byte(`{"tenants":["contoso"],"guards":{"contoso":"0123456789abcdef"}}`)); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := e.ctl(t.Context(), "guards", tenant)
	if code != exitFailed {
		t.Fatalf("exit %d, want 1; stdout:\n%s\nstderr: %s", code, out, errOut)
	}
	want := "GUARDS DIFFER for tenant contoso: replica replica-a and replica replica-old (not answered: by the digest it announced) hold other guards"
	if !strings.Contains(out, want) {
		t.Errorf("stdout lacks %q:\n%s", want, out)
	}
	if !strings.Contains(out, "NOT ANSWERED for tenant contoso: replica replica-old did not answer within 2s") {
		t.Errorf("the replica not answering is not named as such:\n%s", out)
	}
}

// TestGuardsJSONDifferWithAReplicaNotAnswering: --json says which
// replica makes the guards differ when it is one that did not answer and
// announced another digest, as the table does: differNotAnswered, with
// the digest it announced. Before, the JSON had agree false and no
// differ, as for a replica that is merely silent.
func TestGuardsJSONDifferWithAReplicaNotAnswering(t *testing.T) {
	e := newEnv(t, 0)
	e.startReplica("replica-a", guardsDC)
	kv, err := e.js.KeyValue(t.Context(), queue.BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	for id, v := range map[string]string{
		"replica-old":   `{"tenants":["contoso"],"guards":{"contoso":"0123456789abcdef"}}`,
		"replica-older": `{"tenants":["contoso"]}`, // no digest: silent, no difference known
	} {
		if _, err := kv.Put(t.Context(), id, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := e.ctl(t.Context(), "guards", tenant, "--json")
	if code != exitFailed {
		t.Fatalf("exit %d, want 1; stdout:\n%s\nstderr: %s", code, out, errOut)
	}
	// Read by the names the JSON gives, as a script reads it.
	var got struct {
		Tenants []struct {
			Agree             bool     `json:"agree"`
			Differ            []string `json:"differ"`
			NotAnswered       []string `json:"notAnswered"`
			DifferNotAnswered []struct {
				Replicas []string `json:"replicas"`
				Digest   string   `json:"digest"`
			} `json:"differNotAnswered"`
		} `json:"tenants"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Tenants) != 1 {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	tg := got.Tenants[0]
	if tg.Agree || len(tg.Differ) != 0 || strings.Join(tg.NotAnswered, ",") != "replica-old,replica-older" {
		t.Errorf("agree %v, differ %v, notAnswered %v; want false, none (the fields are not known), replica-old and replica-older", tg.Agree, tg.Differ, tg.NotAnswered)
	}
	if d := tg.DifferNotAnswered; len(d) != 1 || strings.Join(d[0].Replicas, ",") != "replica-old" || d[0].Digest != "0123456789abcdef" {
		t.Errorf("differNotAnswered %+v, want replica-old by its digest 0123456789abcdef:\n%s", d, out)
	}
}

// A replica that did not answer names no difference when no other
// digest is known: alone, or beside silent ones that announced the same.
func TestGuardsDifferNotAnsweredOnlyWhenTheyDiffer(t *testing.T) {
	for name, serving := range map[string]map[string]string{
		"alone":       {"replica-old": "0123456789abcdef"},
		"same digest": {"replica-old": "0123456789abcdef", "replica-older": "0123456789abcdef"},
	} {
		tg := compareGuards(tenant, serving, nil)
		if tg.differ || tg.Agree || len(tg.DifferNotAnswered) != 0 {
			t.Errorf("%s: differ %v, agree %v, differNotAnswered %+v; want no difference told", name, tg.differ, tg.Agree, tg.DifferNotAnswered)
		}
	}
	tg := compareGuards(tenant, map[string]string{"replica-old": "0123456789abcdef", "replica-older": "fedcba9876543210"}, nil)
	if !tg.differ || len(tg.DifferNotAnswered) != 2 || tg.DifferNotAnswered[0].Replicas[0] != "replica-old" || tg.DifferNotAnswered[1].Digest != "fedcba9876543210" {
		t.Errorf("two silent replicas of other digests: differ %v, differNotAnswered %+v; want both, by digest", tg.differ, tg.DifferNotAnswered)
	}
}
