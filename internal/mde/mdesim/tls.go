package mdesim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"time"
)

// StartTLS starts an HTTPS server on 127.0.0.1 with a random port, using
// a fresh self-signed ECDSA certificate, and returns its base URL (for example
// "https://127.0.0.1:41234"). It is both the login authority host and the
// API base. Calling it again returns the running server's URL.
func (s *Server) StartTLS() (baseURL string) {
	return s.start(nil, nil)
}

// StartTLSListener is like StartTLS but serves on ln, and with cert unless
// it is nil. The server takes ownership of ln.
func (s *Server) StartTLSListener(ln net.Listener, cert *tls.Certificate) (baseURL string) {
	return s.start(ln, cert)
}

func (s *Server) start(ln net.Listener, cert *tls.Certificate) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.httpSrv != nil {
		if ln != nil {
			_ = ln.Close() // already serving: the offered listener is not needed
		}
		return s.httpSrv.URL
	}
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Config.ErrorLog = log.New(handshakeNoiseFilter{os.Stderr}, "", log.LstdFlags)
	if ln != nil {
		_ = srv.Listener.Close() // replaced by the caller's listener
		srv.Listener = ln
	}
	if cert == nil {
		// Not httptest's RSA certificate: signing every handshake with
		// an RSA key took a quarter of a busy test's CPU.
		own, err := NewSelfSignedCert("127.0.0.1", "localhost")
		if err != nil {
			panic("mdesim: " + err.Error()) // crypto/rand failed
		}
		cert = &own
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	if s.opts.HTTP2 {
		srv.EnableHTTP2 = true
		srv.TLS.NextProtos = []string{"h2", "http/1.1"}
	}
	srv.StartTLS()
	s.httpSrv = srv
	return srv.URL
}

// handshakeNoiseFilter drops the TLS handshake errors logged when a client
// abandons a connection or the server closes while handshakes are under way,
// as happens with many concurrent clients. Other errors, such as a client
// rejecting the certificate, are kept.
type handshakeNoiseFilter struct{ w io.Writer }

func (f handshakeNoiseFilter) Write(p []byte) (int, error) {
	line := string(p)
	if strings.Contains(line, "TLS handshake error") &&
		(strings.HasSuffix(strings.TrimSpace(line), ": EOF") ||
			strings.Contains(line, "use of closed network connection") ||
			strings.Contains(line, "connection reset by peer")) {
		return len(p), nil
	}
	return f.w.Write(p)
}

// URL returns the base URL of the running server, or "" if not started.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.httpSrv == nil {
		return ""
	}
	return s.httpSrv.URL
}

// CertPool returns a pool trusting the running server's certificate, or nil
// if the server is not started.
func (s *Server) CertPool() *x509.CertPool {
	c := s.certificate()
	if c == nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return pool
}

// CertPEM returns the running server's certificate in PEM form, or nil if
// the server is not started.
func (s *Server) CertPEM() []byte {
	c := s.certificate()
	if c == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func (s *Server) certificate() *x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.httpSrv == nil {
		return nil
	}
	return s.httpSrv.Certificate()
}

// Close releases requests waiting on Latency and shuts the server down,
// waiting for outstanding requests. It is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.done) })
	s.mu.Lock()
	srv := s.httpSrv
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// NewSelfSignedCert returns a self-signed ECDSA P-256 certificate valid for
// the given host names and IP addresses, for one year.
func NewSelfSignedCert(hosts ...string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "mdesim", Organization: []string{"mdesim"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// NewMachineID returns a random device id: 40 lowercase hex characters.
func NewMachineID() string {
	var b [20]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
