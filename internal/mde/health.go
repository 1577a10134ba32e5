package mde

import (
	"slices"
	"strings"
)

// HealthStatuses are the values of a device's healthStatus, spelled as the
// API documents them (Machine resource type). The inventory's $filter
// binds a healthStatus to one of them, spelled exactly: any other value is
// refused with 400.
var HealthStatuses = []string{"Active", "Inactive", "ImpairedCommunication", "NoSensorData", "NoSensorDataImpairedCommunication", "Unknown"}

// HealthStatusesSpelled is each of health spelled as the API documents
// it; the first that is none of HealthStatuses is returned as unknown,
// cut short.
func HealthStatusesSpelled(health []string) (spelled []string, unknown string, ok bool) {
	spelled = make([]string, 0, len(health))
	for _, v := range health {
		i := slices.IndexFunc(HealthStatuses, func(s string) bool { return strings.EqualFold(v, s) })
		if i < 0 {
			return nil, shortened(v, 64), false
		}
		spelled = append(spelled, HealthStatuses[i])
	}
	return spelled, "", true
}
