package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// TestDocumentedAnswersChosenByFlags: the answers the documentation
// gives where the simulator's default is the one seen from the service
// can be had from the command too: an offboard answered 200 (the
// documented "200 - Created") with null machineId and computerDnsName,
// a list of no device answered 404, and a Linux device offboarded.
func TestDocumentedAnswersChosenByFlags(t *testing.T) {
	const tenant, client, secret = "11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-000000000000", "s3cret"
	c, err := parseFlags([]string{
		"--tenant-id", tenant, "--client-id", client, "--client-secret", secret, "--machines", "1",
		"--offboard-status", "200", "--empty-machine-list-not-found", "--offboard-any-platform", "--null-action-machine-fields",
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := newServer(&c)
	if err != nil {
		t.Fatal(err)
	}
	const linuxID = "2223456789abcdef0123456789abcdef01234567"
	s.AddMachine(tenant, mdesim.Machine{ID: linuxID, ComputerDNSName: "lnx-01.contoso.local", OSPlatform: "Linux"})
	base := s.StartTLS()
	defer s.Close()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}

	resp, err := hc.PostForm(base+"/"+tenant+"/oauth2/v2.0/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {client}, "client_secret": {secret}, "scope": {mdesim.ScopeSecurityCenter},
	})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	_ = resp.Body.Close()
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %v", err)
	}
	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}

	pc := s.Machines(tenant)[0]
	if status, a := call(http.MethodPost, "/api/machines/"+pc.ID+"/offboard", `{"Comment":"retired"}`); status != http.StatusOK || a["id"] == nil || a["machineId"] != nil {
		t.Errorf("offboard: %d %v, want 200 with the action and a null machineId", status, a)
	}
	if status, a := call(http.MethodPost, "/api/machines/"+linuxID+"/offboard", `{"Comment":"retired"}`); status != http.StatusOK {
		t.Errorf("offboard of a Linux device: %d %v, want 200", status, a)
	}
	if status, _ := call(http.MethodGet, "/api/machines?%24filter=computerDnsName%20eq%20%27none.contoso.local%27", ""); status != http.StatusNotFound {
		t.Errorf("list of no device: %d, want 404", status)
	}
}

// An offboard status other than the documented 200 and the 201 seen is
// bad usage.
func TestOffboardStatusFlag(t *testing.T) {
	for _, v := range []string{"202", "204", "400", "x"} {
		_, err := parseFlags([]string{"--client-secret", "s", "--offboard-status", v}, &bytes.Buffer{})
		if err == nil || errors.Is(err, flag.ErrHelp) || !strings.Contains(err.Error(), "offboard-status") || strings.Contains(err.Error(), "\n") {
			t.Errorf("--offboard-status %s: error %v, want one line naming the flag", v, err)
		}
	}
	c, err := parseFlags([]string{"--client-secret", "s"}, &bytes.Buffer{})
	if err != nil || c.offboardStatus != http.StatusCreated {
		t.Errorf("default offboard status %d (%v), want 201", c.offboardStatus, err)
	}
}
