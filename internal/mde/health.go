package mde

import "strings"

// HealthStatuses are the values of a device's healthStatus, spelled as the
// API documents them (Machine resource type). The inventory's $filter
// binds a healthStatus to one of them, spelled exactly: any other value is
// refused with 400.
var HealthStatuses = []string{"Active", "Inactive", "ImpairedCommunication", "NoSensorData", "NoSensorDataImpairedCommunication", "Unknown"}

// HealthStatus is v spelled as the API documents it, whatever its case;
// false when v is none of HealthStatuses.
func HealthStatus(v string) (string, bool) {
	for _, s := range HealthStatuses {
		if strings.EqualFold(v, s) {
			return s, true
		}
	}
	return "", false
}

// HealthStatusesSpelled is each of health spelled as the API documents
// it; the first that is none of HealthStatuses is returned as unknown,
// cut short.
func HealthStatusesSpelled(health []string) (spelled []string, unknown string, ok bool) {
	spelled = make([]string, 0, len(health))
	for _, v := range health {
		s, known := HealthStatus(v)
		if !known {
			return nil, shortened(v, 64), false
		}
		spelled = append(spelled, s)
	}
	return spelled, "", true
}
