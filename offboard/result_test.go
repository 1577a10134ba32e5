package offboard_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestResultMarshal: a result encoded by Marshal, its Machine Action taken
// as it is, reads back as the same result as one encoded by json.Marshal.
func TestResultMarshal(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	base := offboard.Result{
		RequestID: "r-1", Tenant: "contoso", MachineID: "ab12", Outcome: offboard.OutcomeCreated,
		Attempts: 1, Attempt: 1, RequestSeq: 7, ReceivedAt: at, CompletedAt: at.Add(time.Second),
		Policy: &offboard.Policy{Checked: []string{"protect"}},
	}
	cases := map[string]json.RawMessage{
		"no action": nil,
		"action":    json.RawMessage(`{"id":"a-1","status":"Pending","requestorComment":"<b> & \"q\""}`),
		// The API's answer as it came, spaces and a line end included.
		"action with spaces": json.RawMessage("{ \"id\": \"a-1\",\n  \"commands\": [] }\n"),
	}
	for name, action := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := base
			r.MachineAction = action
			data, err := r.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(data) {
				t.Fatalf("not JSON: %s", data)
			}
			want, err := json.Marshal(&r)
			if err != nil {
				t.Fatal(err)
			}
			var got, exp offboard.Result
			if err := json.Unmarshal(data, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(want, &exp); err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, got.MachineAction, exp.MachineAction) {
				t.Errorf("machineAction %s, want %s", got.MachineAction, exp.MachineAction)
			}
			got.MachineAction, exp.MachineAction = nil, nil
			if !reflect.DeepEqual(got, exp) {
				t.Errorf("read back\n%+v\nwant\n%+v", got, exp)
			}
		})
	}
}

func TestMarshalWith(t *testing.T) {
	t.Parallel()
	type obj struct {
		A int `json:"a,omitempty"`
	}
	for _, tc := range []struct {
		name  string
		v     any
		value string
		want  string
	}{
		{"into an empty object", obj{}, `[1, 2]`, `{"k":[1, 2]}`},
		{"after a member", obj{A: 1}, `{"x":true}`, `{"a":1,"k":{"x":true}}`},
		{"white space around it dropped", obj{A: 1}, " \r\n\t{\"x\":true}\n", `{"a":1,"k":{"x":true}}`},
		{"empty: nothing added", obj{A: 1}, ``, `{"a":1}`},
		{"white space alone: nothing added", obj{A: 1}, " \n", `{"a":1}`},
		{"null kept", obj{}, `null`, `{"k":null}`},
	} {
		got, err := offboard.MarshalWith(tc.v, "k", []byte(tc.value))
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %s, %v; want %s", tc.name, got, err, tc.want)
		}
	}
	if got, err := offboard.MarshalWith([]int{1}, "k", []byte(`1`)); err == nil {
		t.Errorf("an array: %s, want an error", got)
	}
	if got, err := offboard.MarshalWith(obj{}, `a"b`, []byte(`1`)); err != nil || string(got) != `{"a\"b":1}` {
		t.Errorf("a key to escape: %s, %v", got, err)
	}
}

// jsonEqual says whether two JSON texts hold the same value.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(va, vb)
}
