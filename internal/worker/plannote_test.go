package worker

import (
	"strings"
	"testing"
	"time"
)

// TestPlanQuotaNoteSaysAWaitUnderASecond: a plan given up while it waited
// for the tenant's machines quota says how long it waited in all, also
// when that was less than a second: rounded to the second, "0s of
// waiting in all" read as if it had not waited at all.
func TestPlanQuotaNoteSaysAWaitUnderASecond(t *testing.T) {
	rd := inventoryRead{quotaWait: 270 * time.Millisecond, waitingQuota: true}
	if note, want := rd.quotaNote(), "(270ms of waiting in all;"; !strings.Contains(note, want) {
		t.Errorf("note %q, want %q", note, want)
	}
}
