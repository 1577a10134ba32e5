package offboard

import (
	"fmt"
	"testing"
)

func TestResultMsgID(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		id      string
		attempt int
		want    string
	}{
		{"r1", 0, "result:contoso:r1"},
		{"r1", 1, "result:contoso:r1"},
		{"r1", 3, "result:contoso:r1:3"},
		{"chg:x", 1, "result:contoso:chg:x"},
		{"chg:", 1, "result:contoso:chg:"},
		{"chg:2", 1, "result:contoso:chg:2:1"},
		{"chg:2", 0, "result:contoso:chg:2:1"},
		{"chg:2", 2, "result:contoso:chg:2:2"},
		{"12", 1, "result:contoso:12"},
	} {
		if got := ResultMsgID("contoso", c.id, c.attempt); got != c.want {
			t.Errorf("ResultMsgID(contoso, %q, %d) = %q, want %q", c.id, c.attempt, got, c.want)
		}
	}
}

// TestResultMsgIDsNeverMeet: no two request ids and attempts share a
// result's message id, also where a request id ends in what looks like a
// retry's suffix; else the results stream drops one result as a duplicate
// of the other, and that request is never answered.
func TestResultMsgIDsNeverMeet(t *testing.T) {
	t.Parallel()
	ids := []string{"chg", "chg:2", "chg:2:1", "chg:2:2", "chg:1", "chg:21", "chg:02", "chg:", "2", "2:1", "chg:x", "chg:x:2"}
	seen := map[string]string{}
	for _, id := range ids {
		for attempt := 1; attempt <= 3; attempt++ {
			got := ResultMsgID("contoso", id, attempt)
			if other, ok := seen[got]; ok {
				t.Errorf("%s attempt %d and %s share the result id %q", id, attempt, other, got)
			}
			seen[got] = fmt.Sprintf("%s attempt %d", id, attempt)
		}
	}
}
