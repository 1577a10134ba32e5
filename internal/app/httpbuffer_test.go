package app

import (
	"bytes"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHTTPClientCarriesMoreThanItsBuffers: the API client's connections
// hold a read buffer of httpReadBuffer and a write buffer of 4 KiB,
// smaller than a request with a long bearer token, an answer's long
// header or its body. Over HTTP/1.1 each crosses them whole, in both
// directions, on one connection.
func TestHTTPClientCarriesMoreThanItsBuffers(t *testing.T) {
	t.Parallel()
	token := strings.Repeat("t", 12<<10)
	body := bytes.Repeat([]byte("b"), 20*httpReadBuffer)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token || r.ProtoMajor != 1 {
			http.Error(w, "token cut or not HTTP/1.1", http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Long", token)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemCert, 0o600); err != nil {
		t.Fatal(err)
	}
	client, err := httpClient(ca, 2, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.CloseIdleConnections)
	for range 3 {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, body) || resp.Header.Get("X-Long") != token {
			t.Fatalf("answer %d, %d bytes of %d, header of %d bytes, %v", resp.StatusCode, len(got), len(body), len(resp.Header.Get("X-Long")), err)
		}
	}
}
