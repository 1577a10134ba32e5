package mde

import (
	"testing"
	"time"
)

// The certificate expiry metric is read at each scrape: a certificate
// rotated while the tenant makes no call shows at the next scrape, not
// at the tenant's next call, which may be days away (the alert on it
// would stay firing after the rotation).
func TestCertificateExpiryOfAnIdleTenant(t *testing.T) {
	t.Parallel()
	f := setupCertLogin(t)
	cred := f.newCredential(t)
	later, data := certificateFor(t, f.key, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
	replaceFile(t, f.certFile, data)
	setNow(cred, lookEvery)
	if at, _ := cred.CertificateExpiry(); !at.Equal(later.NotAfter) {
		t.Errorf("CertificateExpiry after the rotation, no call made = %v, want %v", at, later.NotAfter)
	}
	replaceFile(t, f.certFile, []byte("not a certificate"))
	setNow(cred, 2*lookEvery)
	if at, _ := cred.CertificateExpiry(); !at.Equal(later.NotAfter) {
		t.Errorf("CertificateExpiry with a broken replacement = %v, want the one in use, %v", at, later.NotAfter)
	}
}
