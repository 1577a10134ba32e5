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

func TestAppendField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ obj, want string }{
		{`{}`, `{"k":[1, 2]}`},
		{`{"a":1}`, `{"a":1,"k":[1, 2]}`},
	} {
		if got := string(offboard.AppendField([]byte(tc.obj), "k", []byte(`[1, 2]`))); got != tc.want {
			t.Errorf("AppendField(%s) = %s, want %s", tc.obj, got, tc.want)
		}
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
