package offboard

import "testing"

// BenchmarkParseRequest is one campaign row's request, as the worker and
// offboardctl parse it.
func BenchmarkParseRequest(b *testing.B) {
	data := []byte(`{"requestId":"retire-2026-q3-000042","machineId":"1e5bc9d7e413ddd7902c2932e418702b84d0cc07","comment":"Retired in CMDB (CHG0012345)","requestedBy":"cmdb-sync","source":"campaign:retire-2026-q3"}`)
	for b.Loop() {
		if _, err := ParseRequest(data, "contoso"); err != nil {
			b.Fatal(err)
		}
	}
}
