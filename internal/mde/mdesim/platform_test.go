package mdesim_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// The documents disagree on whether macOS and Linux devices can be
// offboarded through the API: the older list refuses them, a newer one
// admits them. Each answer can be had.
func TestOffboardPlatforms(t *testing.T) {
	tests := []struct {
		name     string
		all      bool
		id       string
		want     int
		wantCode string
	}{
		{"older list refuses linux", false, linuxID, http.StatusBadRequest, "OsPlatformNotSupported"},
		{"older list refuses macOS", false, macID, http.StatusBadRequest, "OsPlatformNotSupported"},
		{"newer list offboards linux", true, linuxID, http.StatusCreated, ""},
		{"newer list offboards macOS", true, macID, http.StatusCreated, ""},
		{"windows either way", true, winID, http.StatusCreated, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, mdesim.Options{OffboardAnyPlatform: tc.all})
			tok := s.token(t, tenantA, clientA, secretA)
			r := s.do(t, http.MethodPost, "/api/machines/"+tc.id+"/offboard", tok, "application/json", `{"Comment":"x"}`)
			if r.status != tc.want {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.want, r.body)
			}
			if tc.wantCode != "" {
				if e := r.apiError(t); e.Code != tc.wantCode {
					t.Errorf("code = %q, want %q", e.Code, tc.wantCode)
				}
				return
			}
			if a := r.object(t); a["machineId"] != tc.id || a["type"] != "Offboard" || a["status"] != mdesim.StatusPending {
				t.Errorf("action = %v, want a Pending Offboard of %s", a, tc.id)
			}
		})
	}
}

// Windows releases older than those the Offboard machine API lists
// (Windows 11, Windows 10 1703 and later, Windows Server 2012 R2 and
// later) are refused 400 OsPlatformNotSupported under either list: no
// version of the documentation names them. Those it lists are taken.
func TestOffboardOldWindowsRefused(t *testing.T) {
	for _, all := range []bool{false, true} {
		s := newSim(t, mdesim.Options{OffboardAnyPlatform: all})
		tok := s.token(t, tenantA, clientA, secretA)
		for i, tc := range []struct {
			platform string
			want     int
		}{
			{"Windows7", http.StatusBadRequest},
			{"windows7", http.StatusBadRequest},
			{"Windows8", http.StatusBadRequest},
			{"Windows8.1", http.StatusBadRequest},
			{"WindowsServer2008R2", http.StatusBadRequest},
			{"WindowsServer2012", http.StatusBadRequest},
			{"WindowsServer2012R2", http.StatusCreated},
			{"WindowsServer2016", http.StatusCreated},
			{"WindowsServer2022", http.StatusCreated},
			{"Windows10", http.StatusCreated},
		} {
			id := fmt.Sprintf("%040x", 0xa000+i)
			s.AddMachine(tenantA, mdesim.Machine{ID: id, ComputerDNSName: fmt.Sprintf("old-%d.contoso.local", i), OSPlatform: tc.platform})
			r := s.do(t, http.MethodPost, "/api/machines/"+id+"/offboard", tok, "application/json", `{"Comment":"x"}`)
			if r.status != tc.want {
				t.Errorf("%s (any platform %v): status %d, want %d: %s", tc.platform, all, r.status, tc.want, r.body)
				continue
			}
			if tc.want == http.StatusBadRequest {
				if e := r.apiError(t); e.Code != "OsPlatformNotSupported" {
					t.Errorf("%s (any platform %v): code %q, want OsPlatformNotSupported", tc.platform, all, e.Code)
				}
			}
		}
	}
}

// A Windows 10 device of a version before 1703 is refused 400
// ClientVersionNotSupported: the API offboards "Windows 10, version
// 1703 and later". Its version is served in the device's record.
func TestOffboardWindows10BeforeVersion1703(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	tok := s.token(t, tenantA, clientA, secretA)
	for i, tc := range []struct {
		version string
		want    int
	}{
		{"1507", http.StatusBadRequest},
		{"1607", http.StatusBadRequest},
		{"1703", http.StatusCreated},
		{"1709", http.StatusCreated},
		{"22H2", http.StatusCreated},
		{"", http.StatusCreated},
	} {
		id := fmt.Sprintf("%040x", 0xb000+i)
		s.AddMachine(tenantA, mdesim.Machine{ID: id, ComputerDNSName: fmt.Sprintf("w10-%d.contoso.local", i), OSPlatform: "Windows10", Version: tc.version})
		m := s.do(t, http.MethodGet, "/api/machines/"+id, tok, "", "").object(t)
		if want := any(tc.version); tc.version == "" && m["version"] != nil || tc.version != "" && m["version"] != want {
			t.Errorf("version %q: served %#v", tc.version, m["version"])
		}
		r := s.do(t, http.MethodPost, "/api/machines/"+id+"/offboard", tok, "application/json", `{"Comment":"x"}`)
		if r.status != tc.want {
			t.Errorf("Windows10 %q: status %d, want %d: %s", tc.version, r.status, tc.want, r.body)
			continue
		}
		if tc.want == http.StatusBadRequest {
			if e := r.apiError(t); e.Code != "ClientVersionNotSupported" {
				t.Errorf("Windows10 %q: code %q, want ClientVersionNotSupported", tc.version, e.Code)
			}
		}
	}
}
