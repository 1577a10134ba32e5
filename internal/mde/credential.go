package mde

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// CredentialConfig says how a tenant's application proves who it is.
// Exactly one way must be set.
type CredentialConfig struct {
	TenantID string
	ClientID string

	ClientSecretFile string // a file holding the client secret; re-read when it changes
	ClientSecretEnv  string // the name of an environment variable holding it

	CertificateFile         string // PEM or PKCS#12 with the private key
	CertificatePasswordFile string // optional, for an encrypted PKCS#12

	WorkloadIdentity bool   // federated token file, as on AKS
	TokenFile        string // optional; default AZURE_FEDERATED_TOKEN_FILE

	ManagedIdentity bool // the host's managed identity; ClientID picks a user-assigned one
}

// Check reports whether exactly one way to authenticate is set.
func (c CredentialConfig) Check() error {
	_, err := c.kind()
	return err
}

func (c CredentialConfig) kind() (string, error) {
	var kinds []string
	if c.ClientSecretFile != "" {
		kinds = append(kinds, "clientSecretFile")
	}
	if c.ClientSecretEnv != "" {
		kinds = append(kinds, "clientSecretEnv")
	}
	if c.CertificateFile != "" {
		kinds = append(kinds, "certificateFile")
	}
	if c.WorkloadIdentity {
		kinds = append(kinds, "workloadIdentity")
	}
	if c.ManagedIdentity {
		kinds = append(kinds, "managedIdentity")
	}
	if len(kinds) == 0 {
		// Said in words: the count and the list read "(got 0: )".
		return "", errors.New("set exactly one of clientSecretFile, clientSecretEnv, certificateFile, workloadIdentity, managedIdentity (none is set)")
	}
	if len(kinds) != 1 {
		return "", fmt.Errorf("set exactly one of clientSecretFile, clientSecretEnv, certificateFile, workloadIdentity, managedIdentity (got %d: %s)",
			len(kinds), strings.Join(kinds, ", "))
	}
	// A file of another way is not ignored: tokenFile beside
	// managedIdentity (workloadIdentity meant) would log in with the
	// host's identity, on AKS the node's, not the workload's.
	switch {
	case c.TokenFile != "" && !c.WorkloadIdentity:
		return "", fmt.Errorf("tokenFile is set without workloadIdentity: true, and %s takes no token file: remove one", kinds[0])
	case c.CertificatePasswordFile != "" && c.CertificateFile == "":
		return "", fmt.Errorf("certificatePasswordFile is set without certificateFile, and %s takes no password file: remove one", kinds[0])
	}
	return kinds[0], nil
}

// CheckFiles reads the files the settings name, as building the
// credential does, without building it or contacting anything: the
// client secret file, the certificate file and its password file (a
// certificate and its key, valid at now), the federated token file (not
// empty; AZURE_FEDERATED_TOKEN_FILE when tokenFile is not set). Its
// error names the setting and the reason, never the path or what the
// file holds. A client secret in an environment variable is not looked
// at: the variable is the worker's, not the checker's.
func (c CredentialConfig) CheckFiles(now time.Time) error {
	kind, err := c.kind()
	if err != nil {
		return err
	}
	switch kind {
	case "clientSecretFile":
		secret, err := readSecret("clientSecretFile", c.ClientSecretFile)
		if err != nil {
			return err
		}
		if err := checkClientSecret(secret); err != nil {
			return fmt.Errorf("clientSecretFile: the file it names %w", err)
		}
	case "certificateFile":
		_, _, _, err := loadCertificate(c, now)
		return err
	case "workloadIdentity":
		_, _, file, err := c.workloadSettings()
		if err != nil {
			return err
		}
		_, err = readToken(c.tokenFileSetting(), file)
		return err
	}
	return nil
}

// Credential is a token source that can be made to forget its cached token,
// after a 401 or when its secret file changes.
type Credential struct {
	build func() (azcore.TokenCredential, error)
	// watch are the files whose change rebuilds the credential: the
	// secret's, or the certificate's and its password's. The first is
	// named in errors.
	watch []string
	host  string // the login host, for messages; "" for a managed identity
	// managed says the tokens come from the managed identity endpoint,
	// not from the login host: its errors say so.
	managed bool
	// tenantID is the tenant's Entra ID tenant, which a managed
	// identity's tokens must be of (ofTenant).
	tenantID string

	// renew is held while the credential is built again after it was
	// found stale or its token refused: the calls that found it so wait
	// for the one rebuild, and its one token request, rather than each
	// making its own. Taken before mu.
	renew sync.Mutex
	// renewedFor is the refused token TokenRefused last built the
	// credential again for, and renewErr what came of it.
	renewedFor tokenID
	renewErr   error

	mu      sync.Mutex
	current azcore.TokenCredential
	stamp   []fileStamp // of the watched files, in order
	// looked is when the files were last found as stamp says: it is not
	// looked at again before lookEvery has passed.
	looked time.Time
	// reload makes the next token request build the credential again,
	// whatever the file's stamp says: the login host refused what current
	// holds, or the API refused its token and it could not be rebuilt
	// then. current's own cache may still hold that token.
	reload bool
	// token is the last token current gave, for scopes; it is handed out
	// until tokenUntil, tokenMargin before it expires (or from when the
	// login host asked for it to be refreshed) within the bounds of
	// reuseUntil, so that a call does not pay for the library's cache
	// lookup. Building a new credential drops it.
	token      azcore.AccessToken
	scopes     string
	tokenUntil time.Time
	tokenEnd   time.Time        // when token stops serving while the login host cannot give the next one (lastResort)
	gen        uint64           // counts the credentials built, and the refusals of one that could not be rebuilt
	now        func() time.Time // wall clock; a field so tests can move it
	// failed is why the last build failed, nil after one succeeded. Only
	// a text known to hold no part of a file (a certificate's dates) is
	// shown in the token requests' errors.
	failed error
	// failedStamp is the stamp of the files failed came of, and
	// failedUntil when they may be read again unchanged (zero: never; a
	// certificate not valid yet: at its start). Until then a rebuild
	// fails with failed at once: a broken certificate file is not read
	// and parsed again, up to maxCertificateFile, at each token request.
	failedStamp []fileStamp
	failedUntil time.Time
	// onBroken is told of a rebuild that failed (OnBrokenFile).
	onBroken func(error)
	// onInHand is told why no new token could be had when the token in
	// hand serves instead (OnTokenInHand), last at inHandTold.
	onInHand   func(error)
	inHandTold time.Time
	// heldUntil is the end of the wait the login host last asked for
	// (its Retry-After), and held its answer: until then a token request
	// gets held, the wait left in its RetryAfter, and the login host is
	// not asked. The calls of a busy tenant, each asking it again, kept
	// it throttling. A final refusal is held so for refusalHold, while
	// the credential sends what heldFor tells (sourceOf).
	heldUntil time.Time
	held      TokenError
	heldFor   tokenID
	// asking holds a value while a token request asks the login host
	// (Credential.ask).
	asking chan struct{}
}

// clock returns the time of the credential's clock.
func (c *Credential) clock() time.Time {
	c.mu.Lock()
	now := c.now
	c.mu.Unlock()
	return now()
}

// refusalHold is how long a final refusal of the login host (a secret
// that is not the application's, or expired) answers the tenant's token
// requests without asking it again, while the credential holds what was
// refused: every queued request of the tenant sent the refused secret,
// a burst of failed sign-ins in the tenant's logs that Entra ID may
// throttle or lock out. Short: a secret just added in Entra ID can be
// refused for a few seconds, and with the same secret the tenant's
// requests are failed, unauthorized, until the hold is over. A secret
// or certificate changed ends it at once.
const refusalHold = 30 * time.Second

// tokenMargin is how long before its expiry a cached token is no longer
// handed out: a call that takes it has time to finish.
const tokenMargin = 5 * time.Minute

// lastTokenUse is how long before its expiry a token past its reuse is
// no longer handed out while the login host cannot give the next one (a
// 429, a 5xx, no answer): the call that takes it has time to finish.
const lastTokenUse = time.Minute

// Bounds of a token's reuse, whatever lifetime the login host gave it.
// A token of less than tokenMargin (expires_in 0, negative, or 10^10,
// which the identity library reads as expired long ago) was never
// reused, and the library caches none of less than 5 minutes either:
// each call asked the login host, up to the tenant's 100 calls a
// minute, a loop Entra ID throttles. It is handed out for
// minTokenReuse, the least wait azcore's own token refresh keeps
// between two attempts; a token that was in fact expired is refused by
// the API, and renewed once for the calls it was refused to
// (TokenRefused). One of years (10^9 seconds) was handed out for ever:
// Entra ID gives app tokens a lifetime of about an hour, a day at most,
// so a day bounds the reuse.
const (
	minTokenReuse = 30 * time.Second
	maxTokenReuse = 24 * time.Hour
)

// reuseUntil is when tok, got at at, stops being handed out:
// tokenMargin before it expires, or at its refresh time (refresh_in),
// within minTokenReuse and maxTokenReuse of at.
func reuseUntil(tok azcore.AccessToken, at time.Time) time.Time {
	until := tok.ExpiresOn.Add(-tokenMargin)
	if !tok.RefreshOn.IsZero() && tok.RefreshOn.Before(until) {
		until = tok.RefreshOn
	}
	if least := at.Add(minTokenReuse); until.Before(least) {
		until = least
	}
	if most := at.Add(maxTokenReuse); until.After(most) {
		until = most
	}
	return until
}

// fileStamp tells a watched file's change. A file renamed into place (as
// a Kubernetes secret volume, rsync or install replace one) is another
// file even when it has the size and modification time of the one it
// replaced (kept by cp -p, rsync -a, or within one tick of a coarse
// clock).
type fileStamp struct {
	mod  time.Time
	size int64
	info os.FileInfo // nil: the file could not be read
}

// same says whether two stamps are of the same file, unchanged.
func (s fileStamp) same(o fileStamp) bool {
	if s.info == nil || o.info == nil {
		return s.info == nil && o.info == nil
	}
	return s.mod.Equal(o.mod) && s.size == o.size && os.SameFile(s.info, o.info)
}

// builder makes the function that builds a credential of one kind, and
// names the files whose change rebuilds it (none for a kind without
// files). now is the credential's clock.
type builder func(cc CredentialConfig, opts azcore.ClientOptions, noDiscovery bool, now func() time.Time) (build func() (azcore.TokenCredential, error), watch []string)

var builders = map[string]builder{
	"clientSecretFile": secretFileBuilder,
	"clientSecretEnv":  secretEnvBuilder,
	"certificateFile":  certificateBuilder,
	"workloadIdentity": workloadIdentityBuilder,
	"managedIdentity":  managedIdentityBuilder,
}

// NewCredential builds the credential of one tenant. The transport is used
// for the login host, so a custom CA applies there too.
func NewCredential(cc CredentialConfig, c Cloud, transport *http.Client) (*Credential, error) {
	kind, err := cc.kind()
	if err != nil {
		return nil, err
	}
	opts := azcore.ClientOptions{
		Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: c.AuthorityHost},
	}
	// A redirect of the token request would carry the client secret or
	// the signed assertion to another host: none is followed.
	opts.Transport = boundedAnswers{withoutRedirects(transport)}
	// Only the configured login host is contacted: no instance discovery
	// against the public cloud when the host is not one of Microsoft's.
	noDiscovery := !isMicrosoftLogin(c.AuthorityHost)
	cred := &Credential{host: hostOf(c.AuthorityHost), now: time.Now}
	if kind == "managedIdentity" {
		cred.host, cred.managed, cred.tenantID = "", true, cc.TenantID
	} else {
		// The login host is asked once per token request: the identity
		// library's own retry slept a 429's Retry-After (or backed off
		// a 5xx) within the call's time, then asked again, and the call
		// ended "no answer" with its time spent. The caller's retry
		// repeats the call, waiting at least the Retry-After
		// (TokenError.RetryAfter).
		opts.Retry = policy.RetryOptions{MaxRetries: -1}
	}
	cred.build, cred.watch = builders[kind](cc, opts, noDiscovery, cred.clock)
	if err := cred.refresh(); err != nil {
		return nil, err
	}
	// A federated token file is read now, as the other kinds' files are
	// when built: the kubelet mounts a projected token before the
	// container starts, so one missing, empty or unreadable now is a
	// misconfiguration. Read first at the first token request, it let
	// the worker start and say it was ready while every call of the
	// tenant failed. The token read is the one the first request sends.
	if w, ok := cred.current.(*workloadCredential); ok {
		if _, err := w.file.assertion(context.Background()); err != nil {
			return nil, err
		}
	}
	return cred, nil
}

// maxLoginAnswer bounds how much of an answer of the login host (or the
// managed identity endpoint) is read: a token answer takes a few KiB, an
// error answer some tens. The identity library reads an answer whole
// into memory, however long.
const maxLoginAnswer = 1 << 20

// boundedAnswers is the identity library's client: each answer's body
// reads at most maxLoginAnswer bytes, then fails (http.MaxBytesReader).
type boundedAnswers struct{ c *http.Client }

func (b boundedAnswers) Do(req *http.Request) (*http.Response, error) {
	resp, err := b.c.Do(req) //nolint:gosec // the identity library's request to the login host the tenants file names
	if err != nil {
		return nil, err
	}
	resp.Body = http.MaxBytesReader(nil, resp.Body, maxLoginAnswer)
	return resp, nil
}

func secretFileBuilder(cc CredentialConfig, opts azcore.ClientOptions, noDiscovery bool, _ func() time.Time) (func() (azcore.TokenCredential, error), []string) {
	return func() (azcore.TokenCredential, error) {
		secret, err := readSecret("clientSecretFile", cc.ClientSecretFile)
		if err != nil {
			return nil, err
		}
		if err := checkClientSecret(secret); err != nil {
			return nil, fmt.Errorf("clientSecretFile: the file it names %w", err)
		}
		return newSecretCredential(cc, secret, opts, noDiscovery)
	}, []string{cc.ClientSecretFile}
}

func secretEnvBuilder(cc CredentialConfig, opts azcore.ClientOptions, noDiscovery bool, _ func() time.Time) (func() (azcore.TokenCredential, error), []string) {
	return func() (azcore.TokenCredential, error) {
		// A byte order mark is no part of it, as in a secret file: a
		// variable mapped from a Secret made of a file Notepad saved
		// holds one, and the login host refuses the secret with it.
		secret := strings.TrimSpace(strings.TrimPrefix(os.Getenv(cc.ClientSecretEnv), "\ufeff"))
		if secret == "" {
			// The variable is not named: a secret pasted in its place
			// would be shown.
			return nil, errors.New("clientSecretEnv: the environment variable it names is empty or not set")
		}
		if err := checkClientSecret(secret); err != nil {
			return nil, fmt.Errorf("clientSecretEnv: the environment variable it names %w", err)
		}
		return newSecretCredential(cc, secret, opts, noDiscovery)
	}, nil
}

// secretCredential is a client secret's credential, with what tells its
// secret from another (sourceOf).
type secretCredential struct {
	*azidentity.ClientSecretCredential
	secret tokenID
}

func newSecretCredential(cc CredentialConfig, secret string, opts azcore.ClientOptions, noDiscovery bool) (azcore.TokenCredential, error) {
	tc, err := azidentity.NewClientSecretCredential(cc.TenantID, cc.ClientID, secret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: noDiscovery})
	if err != nil {
		return nil, err
	}
	return secretCredential{tc, idOf(secret)}, nil
}

func (c secretCredential) source(context.Context) (tokenID, bool) { return c.secret, true }

// checkClientSecret refuses what is plainly no client secret, before it
// is sent to the login host as one: a certificate or key put in the
// secret's place, as PEM or as PKCS#12 (binary). A client secret is
// printable text (Entra ID makes them of letters, digits and ~._-).
// Its error says what was found, not the content.
func checkClientSecret(secret string) error {
	switch {
	case strings.Contains(secret, "-----BEGIN "):
		return errors.New("holds a certificate or key; use certificateFile")
	case utf8.ValidString(secret) && strings.ContainsAny(secret, "\r\n") &&
		!strings.ContainsFunc(secret, func(r rune) bool { return unicode.IsControl(r) && !strings.ContainsRune("\r\n\t", r) }):
		// Text, yet no secret alone (the secret with its id or a note
		// beside it, a .env file): not told as binary data, which sent
		// the reader looking for a certificate.
		return errors.New("holds several lines of text; a client secret is one line: give the secret alone")
	case !utf8.ValidString(secret) || strings.ContainsFunc(secret, unicode.IsControl):
		return errors.New("holds binary data, not a client secret (a PKCS#12 certificate or a key?); use certificateFile for a certificate")
	}
	return nil
}

func certificateBuilder(cc CredentialConfig, opts azcore.ClientOptions, noDiscovery bool, now func() time.Time) (func() (azcore.TokenCredential, error), []string) {
	return func() (azcore.TokenCredential, error) {
		at := now()
		certs, key, cert, err := loadCertificate(cc, at)
		if err != nil {
			return nil, err
		}
		certs, next := sentWith(certs, cert, at)
		tc, err := azidentity.NewClientCertificateCredential(cc.TenantID, cc.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: noDiscovery, SendCertificateChain: true})
		if err != nil {
			return nil, err
		}
		return certificateCredential{tc, cert.NotAfter, idOfCertificates(certs), next}, nil
	}, slices.DeleteFunc([]string{cc.CertificateFile, cc.CertificatePasswordFile}, func(p string) bool { return p == "" })
}

// loadCertificate reads the certificate file and its password file,
// and returns the file's certificates and key, and the certificate the
// key signs for, valid at now. Its errors name the setting, never the
// path or what the files hold.
func loadCertificate(cc CredentialConfig, now time.Time) ([]*x509.Certificate, crypto.PrivateKey, *x509.Certificate, error) {
	data, err := ReadCredentialFile("certificateFile", cc.CertificateFile, maxCertificateFile)
	if err != nil {
		return nil, nil, nil, err
	}
	// A PEM file with a byte order mark is read as its text; PKCS#12
	// starts with no such mark (a DER sequence's 0x30).
	data = PEMText(data)
	var password []byte
	if cc.CertificatePasswordFile != "" {
		p, err := readSecret("certificatePasswordFile", cc.CertificatePasswordFile)
		if err != nil {
			return nil, nil, nil, err
		}
		password = []byte(p)
	}
	certs, key, err := parseCertificates(data, password)
	if err != nil && encryptedPEMKey(data) {
		return nil, nil, nil, errors.New("certificateFile: an encrypted PEM key is not supported: export the certificate as PKCS#12 (.pfx) with its password, or the key unencrypted")
	}
	switch {
	case errors.Is(err, pkcs12.ErrIncorrectPassword) && cc.CertificatePasswordFile == "":
		return nil, nil, nil, errors.New("certificateFile: the PKCS#12 file needs its password: set certificatePasswordFile")
	case errors.Is(err, pkcs12.ErrIncorrectPassword):
		return nil, nil, nil, errors.New("certificateFile: the password certificatePasswordFile holds does not open the PKCS#12 file")
	case err != nil:
		// The library's text is not repeated: it is about the file's
		// contents.
		return nil, nil, nil, errors.New("certificateFile: no certificate and private key could be read from the file it names (wrong format or password)")
	}
	cert, err := checkCertificateKey(certs, key, now)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := checkCertificateDates(cert, now); err != nil {
		return nil, nil, nil, err
	}
	return certs, key, cert, nil
}

// sentWith returns the certificates to give the identity library with
// cert, which the file's key signs for at now (checkCertificateKey), and
// when the first of the others of its key not valid at now starts (zero:
// none does), for the credential to be built again then. The library
// signs for the last certificate of the key in the list, whatever its
// dates: the others of the key (a renewal that kept it, appended to the
// file) are left out, and the one checked is the one sent. Chosen once,
// a renewal appended before its start was not sent until the file
// changed or the login host refused the certificate that had expired.
func sentWith(certs []*x509.Certificate, cert *x509.Certificate, now time.Time) ([]*x509.Certificate, time.Time) {
	var next time.Time
	sent := slices.DeleteFunc(slices.Clone(certs), func(c *x509.Certificate) bool {
		other := c != cert && cert.PublicKey.(*rsa.PublicKey).Equal(c.PublicKey)
		if other && c.NotBefore.After(now) && (next.IsZero() || c.NotBefore.Before(next)) {
			next = c.NotBefore
		}
		return other
	})
	return sent, next
}

// parseCertificates reads a certificate file's certificates and key, as
// the identity library does, and also what it does not read: a PEM file
// with a password given (the password of nothing, as a PEM key is not
// encrypted here; with one, the library tries PKCS#12 alone), and a
// PKCS#12 file encrypted with AES and SHA-256, as OpenSSL 3 and today's
// Windows export by default (the library reads SHA-1 with 3DES or RC2
// alone).
func parseCertificates(data, password []byte) ([]*x509.Certificate, crypto.PrivateKey, error) {
	certs, key, err := azidentity.ParseCertificates(data, password)
	switch {
	case err == nil:
		return certs, key, nil
	case bytes.Contains(data, []byte("-----BEGIN ")):
		if len(password) == 0 {
			return nil, nil, err
		}
		return azidentity.ParseCertificates(data, nil)
	}
	k, leaf, chain, perr := pkcs12.DecodeChain(data, string(password))
	if errors.Is(perr, pkcs12.ErrIncorrectPassword) {
		return nil, nil, perr // a PKCS#12 file, and the password to name
	}
	if perr != nil {
		return nil, nil, err
	}
	return append([]*x509.Certificate{leaf}, chain...), k, nil
}

// certificateCredential is a certificate's credential, with when the
// certificate stops being valid (CertificateExpiry).
type certificateCredential struct {
	*azidentity.ClientCertificateCredential
	notAfter time.Time
	certs    tokenID // tells the file's certificates from others (sourceOf)
	// renewed is when another certificate of the key in the file starts
	// (zero: none): the credential is built again then, to choose anew.
	renewed time.Time
}

func (c certificateCredential) source(context.Context) (tokenID, bool) { return c.certs, true }

// idOfCertificates tells a file's certificates from another's: a new
// key, or the same key certified again, is another certificate.
func idOfCertificates(certs []*x509.Certificate) tokenID {
	var all []byte
	for _, c := range certs {
		all = append(all, c.Raw...)
	}
	return idOf(string(all))
}

// CertificateExpiry is when the certificate the credential signs with
// stops being valid: the one in use, which a broken or expired
// replacement does not replace; false for a credential of another kind.
// A certificate file changed is taken up first, as a token request
// would: a tenant that makes no call shows a rotated certificate all
// the same (and a broken one is told, OnBrokenFile).
func (c *Credential) CertificateExpiry() (time.Time, bool) {
	c.mu.Lock()
	_, ok := c.current.(certificateCredential)
	c.mu.Unlock()
	if ok && c.stale() {
		// A failure is told to OnBrokenFile; the certificate in use stays.
		_ = c.rebuildStale()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cc, ok := c.current.(certificateCredential)
	return cc.notAfter, ok
}

// encryptedPEMKey says whether data holds a PEM private key encrypted
// with a password, as PKCS#8 ("ENCRYPTED PRIVATE KEY") or in the older
// form of a key block with a Proc-Type header. The identity library
// decrypts a PKCS#12 file only: such a key is not found, or not read.
func encryptedPEMKey(data []byte) bool {
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return false
		}
		if b.Type == "ENCRYPTED PRIVATE KEY" ||
			(strings.HasSuffix(b.Type, "PRIVATE KEY") && strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED")) {
			return true
		}
	}
}

// checkCertificateKey says why a certificate file's key cannot sign for
// it, in words that name the setting: the identity library signs with an
// RSA key only, that of one of the file's certificates, and its own
// error names neither the setting nor the file.
// It returns the certificate the key signs for: of several (the file
// may keep the certificate a renewal with the same key replaced), the
// one valid at now that ends last; with none valid, the one not valid
// yet that starts first, whose start has the file read again
// (retryAt); else the one that ended last.
func checkCertificateKey(certs []*x509.Certificate, key crypto.PrivateKey, now time.Time) (*x509.Certificate, error) {
	k, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("certificateFile: the private key in the file it names is not an RSA key; the client assertion is signed with RSA only")
	}
	var found *x509.Certificate
	for _, c := range certs {
		if k.PublicKey.Equal(c.PublicKey) && (found == nil || signsRather(c, found, now)) {
			found = c
		}
	}
	if found == nil {
		return nil, errors.New("certificateFile: the private key in the file it names belongs to none of its certificates")
	}
	return found, nil
}

// signsRather says whether c, of the same key as found, is the one to
// sign with at now rather than found (checkCertificateKey). Taking the
// first when none was valid, an expired certificate before its renewal
// not valid yet was refused as expired, and the file not read again at
// the renewal's start.
func signsRather(c, found *x509.Certificate, now time.Time) bool {
	rank := func(c *x509.Certificate) int {
		switch {
		case checkCertificateDates(c, now) == nil:
			return 2
		case now.Before(c.NotBefore):
			return 1
		}
		return 0
	}
	switch rc, rf := rank(c), rank(found); {
	case rc != rf:
		return rc > rf
	case rc == 1:
		return c.NotBefore.Before(found.NotBefore)
	}
	return c.NotAfter.After(found.NotAfter)
}

// certificateDatesError is a certificate used out of its validity: the
// login host refuses it (AADSTS700027), in words that name neither the
// setting nor the dates. Its text holds no secret.
type certificateDatesError struct {
	notBefore, notAfter time.Time
	expired             bool
}

func (e *certificateDatesError) Error() string {
	state := "is not valid yet"
	if e.expired {
		state = "has expired"
	}
	return fmt.Sprintf("certificateFile: the certificate in the file it names %s: valid from %s to %s",
		state, e.notBefore.UTC().Format(time.RFC3339), e.notAfter.UTC().Format(time.RFC3339))
}

// checkCertificateDates refuses a certificate that is not valid at now.
func checkCertificateDates(c *x509.Certificate, now time.Time) error {
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return &certificateDatesError{notBefore: c.NotBefore, notAfter: c.NotAfter, expired: now.After(c.NotAfter)}
	}
	return nil
}

// workloadIdentityBuilder builds what azidentity's
// WorkloadIdentityCredential does, a client assertion credential whose
// assertion is the federated token file's content, re-read every
// tokenFileReuse, but reads the file as the other credential files are
// read: a regular file of bounded size (the library reads whatever the
// path names, to its end).
func workloadIdentityBuilder(cc CredentialConfig, opts azcore.ClientOptions, noDiscovery bool, now func() time.Time) (func() (azcore.TokenCredential, error), []string) {
	return func() (azcore.TokenCredential, error) {
		tenantID, clientID, file, err := cc.workloadSettings()
		if err != nil {
			return nil, err
		}
		tf := &tokenFile{path: file, setting: cc.tokenFileSetting(), now: now}
		cred, err := azidentity.NewClientAssertionCredential(tenantID, clientID, tf.assertion,
			&azidentity.ClientAssertionCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: noDiscovery})
		if err != nil {
			return nil, err
		}
		return &workloadCredential{cred: cred, file: tf}, nil
	}, nil
}

// workloadSettings are a workload identity's tenant, application and
// federated token file: the settings', or the library's defaults, from
// the variables the workload identity webhook sets.
func (c CredentialConfig) workloadSettings() (tenantID, clientID, file string, err error) {
	tenantID, clientID, file = c.TenantID, c.ClientID, c.TokenFile
	for _, d := range []struct {
		v    *string
		name string
	}{{&tenantID, "AZURE_TENANT_ID"}, {&clientID, "AZURE_CLIENT_ID"}, {&file, "AZURE_FEDERATED_TOKEN_FILE"}} {
		if *d.v == "" {
			*d.v = os.Getenv(d.name)
		}
		if *d.v == "" {
			return "", "", "", fmt.Errorf("workloadIdentity: %s is not set", d.name)
		}
	}
	return tenantID, clientID, file, nil
}

// tokenFileSetting is the setting that names the federated token file,
// for its errors: tokenFile, or the variable that stands in for it.
func (c CredentialConfig) tokenFileSetting() string {
	if c.TokenFile != "" {
		return "tokenFile"
	}
	return "AZURE_FEDERATED_TOKEN_FILE"
}

// workloadCredential reads the token file before each token request, so
// that a file that cannot be read is reported as such: the identity
// library does not pass on the assertion's error.
type workloadCredential struct {
	cred *azidentity.ClientAssertionCredential
	file *tokenFile
}

// source tells the federated token the next request sends, the file
// read again when it changed: false when it cannot be read.
func (w *workloadCredential) source(ctx context.Context) (tokenID, bool) {
	tok, err := w.file.assertion(ctx)
	if err != nil {
		return tokenID{}, false
	}
	return idOf(tok), true
}

func (w *workloadCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if _, err := w.file.assertion(ctx); err != nil {
		return azcore.AccessToken{}, err
	}
	return w.cred.GetToken(ctx, opts)
}

// tokenFileReuse is how long a federated token read from its file is
// used before the file is read again, as azidentity does: Kubernetes
// replaces the token when 80% of its life (at least an hour) has passed.
const tokenFileReuse = 10 * time.Minute

// tokenFile is a workload identity's federated token file.
type tokenFile struct {
	path    string
	setting string           // what named path, for its errors (tokenFileSetting)
	now     func() time.Time // the credential's clock

	mu    sync.Mutex
	token string
	until time.Time
	stamp fileStamp // of the file token was read from
}

// assertion returns the federated token, read again when older than
// tokenFileReuse or when the file changed: a token the login host
// refused (expired: a projected token of 10 minutes is replaced 2
// minutes before its end) is not sent again, up to tokenFileReuse
// later, once the file holds its successor. Its error is a
// *credentialFileError.
func (f *tokenFile) assertion(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now, stamp := f.now(), stampOf(f.path)
	if !now.Before(f.until) || !stamp.same(f.stamp) {
		tok, err := readToken(f.setting, f.path)
		if err != nil {
			return "", &credentialFileError{err: err}
		}
		f.token, f.until, f.stamp = tok, now.Add(tokenFileReuse), stamp
	}
	return f.token, nil
}

// forget has the file read again at the next assertion, whatever its
// stamp: the login host refused the token read.
func (f *tokenFile) forget() {
	f.mu.Lock()
	f.until = time.Time{}
	f.mu.Unlock()
}

// readToken reads a federated token file. A projected service account
// token is a JWT, three base64url parts joined by '.': another file of
// the service account's volume named in its place (ca.crt, namespace)
// was sent to the login host as the assertion, and every call of the
// tenant failed. Its errors name the setting (tokenFile or the variable
// AZURE_FEDERATED_TOKEN_FILE), not the path or the content.
func readToken(setting, path string) (string, error) {
	tok, err := readSecret(setting, path)
	if err != nil {
		return "", err
	}
	parts := strings.Split(tok, ".")
	notBase64URL := func(p string) bool {
		return p == "" || strings.ContainsFunc(strings.TrimRight(p, "="), func(r rune) bool {
			return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '_'
		})
	}
	if len(parts) != 3 || slices.ContainsFunc(parts, notBase64URL) {
		return "", fmt.Errorf("%s: the file it names holds no token (a JWT, three base64url parts joined by '.'): name the projected token's file, such as /var/run/secrets/azure/tokens/azure-identity-token", setting)
	}
	return tok, nil
}

// credentialFileError is a credential file that could not be read when a
// token was asked for. Its text names the setting and the reason, never
// the path or the content.
type credentialFileError struct{ err error }

func (e *credentialFileError) Error() string { return e.err.Error() }

func managedIdentityBuilder(cc CredentialConfig, opts azcore.ClientOptions, _ bool, _ func() time.Time) (func() (azcore.TokenCredential, error), []string) {
	return func() (azcore.TokenCredential, error) {
		// The same client as the others: it follows no redirect, which
		// would carry the identity endpoint's secret header elsewhere.
		o := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: opts}
		if b, ok := opts.Transport.(boundedAnswers); ok && onServiceFabric() {
			// Service Fabric's endpoint is reached with the node's
			// certificate pinned, in a copy of the client the identity
			// library makes: it takes an *http.Client only, and refused
			// the wrapper that bounds the answers. The client still
			// follows no redirect; the answer is the node's own.
			o.ClientOptions.Transport = b.c
		}
		if cc.ClientID != "" {
			o.ID = azidentity.ClientID(cc.ClientID)
		}
		return azidentity.NewManagedIdentityCredential(o)
	}, nil
}

// onServiceFabric says whether the environment names Service Fabric's
// managed identity endpoint, as the identity library tells it: the
// endpoint, its secret and its certificate's thumbprint.
func onServiceFabric() bool {
	for _, v := range []string{"IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT"} {
		if os.Getenv(v) == "" {
			return false
		}
	}
	return true
}

// hostOf returns the host of a login host's URL, for messages.
func hostOf(authority string) string {
	if u, err := url.Parse(authority); err == nil && u.Host != "" {
		return u.Host
	}
	return "(unknown)"
}

func isMicrosoftLogin(host string) bool {
	for _, c := range Clouds {
		if strings.EqualFold(strings.TrimRight(host, "/"), c.AuthorityHost) {
			return true
		}
	}
	return false
}

// Bounds of the credential files: a client secret, a password or a
// federated token takes a few KiB at most; a certificate bundle, its
// chain included, some tens of KiB.
const (
	maxSecretFile      = 64 << 10
	maxCertificateFile = 4 << 20
)

// readSecret reads the secret in the file that path, the setting named
// field, names. Its errors name the setting, not the path: a secret (or a
// certificate) pasted where its file's path belongs would be shown. A
// UTF-8 byte order mark before it, as Notepad and PowerShell 5 write, is
// no part of it: sent along, the login host refuses the secret. A file
// in UTF-16 with its mark (PowerShell 5's > and Out-File) is read as the
// text it holds.
func readSecret(field, path string) (string, error) {
	data, err := ReadCredentialFile(field, path, maxSecretFile)
	if err != nil {
		return "", err
	}
	s := string(bytes.TrimSpace(bytes.TrimPrefix(fromUTF16(data), []byte("\ufeff"))))
	if s == "" {
		return "", fmt.Errorf("%s: the file it names is empty", field)
	}
	return s, nil
}

// ReadSecretFile reads the secret in the file that path, the setting
// named field, names, as a tenant's clientSecretFile is read: a byte
// order mark left out, UTF-16 read as its text, white space around it
// trimmed. Its errors name the setting, not the path.
func ReadSecretFile(field, path string) (string, error) { return readSecret(field, path) }

// PEMText is a PEM file's content as the text it holds: a byte order
// mark (Notepad's UTF-8, PowerShell 5's UTF-16) left out, UTF-16 read as
// UTF-8. The PEM reader finds no block on the mark's line: the file's
// first certificate was not read.
func PEMText(data []byte) []byte { return bytes.TrimPrefix(fromUTF16(data), []byte("\ufeff")) }

// fromUTF16 is data as UTF-8 when it is UTF-16 with a byte order mark,
// little- or big-endian, the mark kept; data otherwise. A character
// UTF-16 cannot hold (a lone surrogate) becomes U+FFFD.
func fromUTF16(data []byte) []byte {
	var order binary.ByteOrder
	switch {
	case len(data)%2 != 0:
		return data
	case bytes.HasPrefix(data, []byte{0xff, 0xfe}):
		order = binary.LittleEndian
	case bytes.HasPrefix(data, []byte{0xfe, 0xff}):
		order = binary.BigEndian
	default:
		return data
	}
	units := make([]uint16, len(data)/2)
	for i := range units {
		units[i] = order.Uint16(data[2*i:])
	}
	return []byte(string(utf16.Decode(units)))
}

// ReadCredentialFile reads the file that path, the setting named field,
// names: a regular file of at most limit bytes. A device or a FIFO named
// by mistake (/dev/zero, /dev/stdin) would be read for ever, or block
// the start or the reload that reads it. Its error names the setting and
// the reason ("no such file or directory", "permission denied", "not a
// regular file"), not the path.
func ReadCredentialFile(field, path string, limit int64) ([]byte, error) {
	data, err := ReadRegularFile(path, limit)
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		err = pe.Err
	}
	switch {
	case errors.Is(err, ErrNotRegular):
		return nil, fmt.Errorf("%s: the file it names is not a regular file", field)
	case errors.Is(err, ErrTooLarge):
		return nil, fmt.Errorf("%s: the file it names is larger than %d KiB", field, limit>>10)
	case err != nil:
		return nil, fmt.Errorf("%s: the file it names could not be read: %w", field, err)
	}
	return data, nil
}

// Errors of ReadRegularFile.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("file too large")
)

// ReadRegularFile reads a regular file of at most limit bytes: a device or
// a FIFO named by mistake (/dev/zero) would be read for ever. It is
// opened without blocking: opening a FIFO for reading otherwise waits
// for a writer. The credential files are read so, and the tenants file.
func ReadRegularFile(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, ErrNotRegular
	}
	if fi.Size() > limit {
		return nil, ErrTooLarge
	}
	var buf bytes.Buffer
	buf.Grow(int(fi.Size()) + bytes.MinRead)
	// The file may have grown since: one byte more than the bound tells.
	if _, err := buf.ReadFrom(io.LimitReader(f, limit+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, ErrTooLarge
	}
	return buf.Bytes(), nil
}

// stampsOf returns the stamps of the files paths names, in order.
func stampsOf(paths []string) []fileStamp {
	stamps := make([]fileStamp, len(paths))
	for i, p := range paths {
		stamps[i] = stampOf(p)
	}
	return stamps
}

// sameStamps says whether two stamps of the watched files find them
// alike.
func sameStamps(a, b []fileStamp) bool { return slices.EqualFunc(a, b, fileStamp.same) }

func stampOf(path string) fileStamp {
	if path == "" {
		return fileStamp{}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size(), info: fi}
}

// lookEvery is how long a credential trusts its file to be as it last
// found it. A rotated secret is mounted within seconds to minutes (a
// Kubernetes Secret volume), and a 401 rebuilds the credential at once;
// a look at every call cost about 2% of a busy worker's CPU.
const lookEvery = time.Second

// fileChanged says whether a watched file differs from the one the
// credential was built from. Files found unchanged are trusted for
// lookEvery; a changed one is looked at every time until a rebuild
// succeeds. now is the credential's clock. c.mu is held.
func (c *Credential) fileChanged(now time.Time) bool {
	if len(c.watch) == 0 {
		return false
	}
	if since := now.Sub(c.looked); !c.looked.IsZero() && since >= 0 && since < lookEvery {
		return false
	}
	if !sameStamps(stampsOf(c.watch), c.stamp) {
		return true
	}
	c.looked = now
	return false
}

// refresh builds a new credential, dropping any cached token. Files that
// failed to build one are not read again until they change.
func (c *Credential) refresh() error {
	stamp := stampsOf(c.watch)
	if err := c.failedBefore(stamp); err != nil {
		return err
	}
	tc, err := c.build()
	c.mu.Lock()
	// Told once for files that failed: not again for the same files
	// read again (after a permission error, or at a certificate's start).
	tell := err != nil && c.current != nil && c.onBroken != nil &&
		(c.failed == nil || !sameStamps(stamp, c.failedStamp))
	c.failed, c.failedStamp, c.failedUntil = err, stamp, retryAt(err)
	onBroken := c.onBroken
	c.mu.Unlock()
	if tell {
		onBroken(err)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.current, c.stamp, c.reload, c.looked = tc, stamp, false, time.Time{}
	c.token, c.scopes = azcore.AccessToken{}, ""
	c.gen++
	c.mu.Unlock()
	return nil
}

// OnBrokenFile has f told when the credential's files changed (or what
// they held was refused) and could not be used to build it again, once
// for the files as they are: the last token serves until it expires, and
// only then do the tenant's calls fail, up to an hour after the change.
// f's error names the setting, never the files' content.
func (c *Credential) OnBrokenFile(f func(error)) {
	c.mu.Lock()
	c.onBroken = f
	c.mu.Unlock()
}

// OnTokenInHand has f told why no new token could be had (the login
// host's 429 or 5xx, no answer, a credential file broken) when the token
// in hand serves instead, at most once every inHandTellEvery: the
// tenant's calls succeed meanwhile, and all fail from a minute before it
// expires, hours later for a long-lived token past its refresh_in. f's
// error is a *TokenError.
func (c *Credential) OnTokenInHand(f func(error)) {
	c.mu.Lock()
	c.onInHand = f
	c.mu.Unlock()
}

// inHandTellEvery is how often OnTokenInHand is told while the token in
// hand serves: as often as a tenant's failed calls are logged.
const inHandTellEvery = time.Minute

// tellInHand tells OnTokenInHand that the token in hand serves, te why.
// Not while it is within its reuse: a broken credential file is told
// once by OnBrokenFile, and the token would serve anyway.
func (c *Credential) tellInHand(te *TokenError) {
	c.mu.Lock()
	now, f := c.now(), c.onInHand
	if since := now.Sub(c.inHandTold); f == nil || c.fresh(now) || !c.inHandTold.IsZero() && since >= 0 && since < inHandTellEvery {
		c.mu.Unlock()
		return
	}
	c.inHandTold = now
	c.mu.Unlock()
	f(te)
}

// failedBefore returns the error of the last build when it failed with
// the files as stamp finds them, and they are not to be read again yet.
// A file that could not be opened for want of permission is read again:
// its mode or owner put right changes no stamp.
func (c *Credential) failedBefore(stamp []fileStamp) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.failed == nil || len(c.watch) == 0 || errors.Is(c.failed, fs.ErrPermission):
		return nil
	case !sameStamps(stamp, c.failedStamp):
		return nil
	case !c.failedUntil.IsZero() && !c.now().Before(c.failedUntil):
		return nil
	}
	return c.failed
}

// retryAt is when files that failed to build a credential with err may
// be read again unchanged: at the start of a certificate not valid yet,
// otherwise never (zero).
func retryAt(err error) time.Time {
	if de := (*certificateDatesError)(nil); errors.As(err, &de) && !de.expired {
		return de.notBefore
	}
	return time.Time{}
}

// Invalidate makes the next token request go to the login host, for
// instance after the API answered 401 to a cached token. Its error is a
// *TokenError.
func (c *Credential) Invalidate() error {
	c.renew.Lock()
	defer c.renew.Unlock()
	return c.invalidate()
}

// TokenRefused is Invalidate after the API refused the token of v's call
// (a 401, RefreshToken set), done once for all the calls that token was
// refused to: a burst of them, when it expired or was revoked, makes one
// rebuild and one token request, not one each. A call that comes after
// gets nil when the first renewed the credential, or the credential was
// built again since, or another token is in hand already; after a
// rebuild that failed, and none since, it tries again: the file may be
// right by now (a rebuild that fails makes no token request). A new
// token refused in its turn is renewed again. Its error is a
// *TokenError.
func (c *Credential) TokenRefused(v *Verdict) error {
	c.renew.Lock()
	defer c.renew.Unlock()
	id := v.refused
	if id == (tokenID{}) { // not known which: as Invalidate
		return c.invalidate()
	}
	c.mu.Lock()
	switch {
	case c.token.Token != "" && idOf(c.token.Token) != id:
		c.mu.Unlock()
		return nil
	case c.renewedFor == id && (c.renewErr == nil || !c.reload):
		// Renewed, or built again since its renewal failed (only a
		// rebuild clears reload, which the failure set).
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	err := c.invalidate()
	c.mu.Lock()
	c.renewedFor, c.renewErr = id, err
	c.mu.Unlock()
	return err
}

// invalidate is Invalidate. c.renew is held.
func (c *Credential) invalidate() error {
	if err := c.refresh(); err != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		// Refused: never handed out again, neither from here nor from
		// the cache of the credential that got it.
		// A token request under way meanwhile does not keep its token.
		c.token, c.reload = azcore.AccessToken{}, true
		c.gen++
		return c.credentialError()
	}
	return nil
}

// credentialError is the error of a credential that could not be rebuilt.
// The cause is not kept, it may hold part of a file's contents, unless
// it is a certificate's dates. c.mu is held.
func (c *Credential) credentialError() *TokenError {
	te := &TokenError{Host: c.host, failure: failCredential}
	if len(c.watch) > 0 {
		te.File = c.watch[0]
	}
	if de := (*certificateDatesError)(nil); errors.As(c.failed, &de) {
		te.detail = de.Error()
	}
	return te
}

// GetToken returns a token, cached until shortly before it expires (or
// the login host asks for it to be refreshed). A changed secret or certificate file is picked
// up first. After the login host refused the credentials, the token
// requests get its refusal for refusalHold without asking it again,
// unless the secret, certificate or federated token changed. Its error
// is a *TokenError.
func (c *Credential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	scopes := strings.Join(opts.Scopes, " ")
	reusable := opts.Claims == "" && opts.TenantID == "" && !opts.EnableCAE
	if tok, ask, err := c.answer(ctx, reusable, scopes); ask == nil {
		return tok, err
	}
	// One token request at a time: the calls that found no token wait
	// for it and take its token, or its refusal, where each asked the
	// login host (a queue's first calls each sent a refused secret).
	// While another asks, a token in hand that may still be sent serves
	// instead: a login host that hangs held each call its whole time.
	release, tok, err := c.ask(ctx, reusable, scopes)
	switch {
	case err != nil:
		return c.lastResort(ctx, reusable, scopes, classifyTokenError(ctx, c.host, c.managed, err))
	case release == nil:
		return tok, nil
	}
	defer release()
	tok, ask, err := c.answer(ctx, reusable, scopes)
	if ask == nil {
		return tok, err
	}
	tc, gen := ask.tc, ask.gen
	sent, _ := sourceOf(ctx, tc)
	askCtx, cancel := c.askTime(ctx, reusable, scopes)
	defer cancel()
	tok, err = tc.GetToken(askCtx, opts)
	if fe := (*credentialFileError)(nil); errors.As(err, &fe) {
		// Not final: the file may be put right.
		return c.lastResort(ctx, reusable, scopes, &TokenError{Host: c.host, failure: failCredential, detail: fe.Error()})
	}
	if err != nil {
		te := classifyTokenError(askCtx, c.host, c.managed, err)
		c.hold(te, sent)
		if te.Final {
			c.readAgain(gen)
		}
		return c.lastResort(ctx, reusable, scopes, te)
	}
	if !sendable(tok.Token) {
		return azcore.AccessToken{}, c.unsendable(gen)
	}
	if c.managed && !ofTenant(tok.Token, c.tenantID) {
		return azcore.AccessToken{}, &TokenError{Final: true, managed: true, failure: failOtherTenant}
	}
	c.keep(tok, reusable, scopes, gen)
	return tok, nil
}

// keep keeps tok, the login host's answer to a token request for scopes
// made with the credential gen counts, as the token in hand, unless the
// credential was built again meanwhile, and ends a refusal's hold.
func (c *Credential) keep(tok azcore.AccessToken, reusable bool, scopes string, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if reusable && c.gen == gen { // not rebuilt meanwhile
		at := c.now()
		c.token, c.scopes, c.tokenUntil = tok, scopes, reuseUntil(tok, at)
		c.tokenEnd = tok.ExpiresOn.Add(-lastTokenUse)
		if most := at.Add(maxTokenReuse); c.tokenEnd.After(most) {
			c.tokenEnd = most
		}
	}
	if c.held.Final {
		c.heldUntil = time.Time{}
	}
}

// askTime is the context a token request asks the login host in: with a
// token in hand that lastResort would hand out, half the call's time is
// left, so that one that does not answer leaves the call the other half
// to send that token. A lone call (a quiet tenant's request, a tracker's
// poll) waited for a login host that hung its whole time and failed,
// each attempt, while the token in hand went unused.
func (c *Credential) askTime(ctx context.Context, reusable bool, scopes string) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if _, inHand := c.inHand(reusable, scopes); !ok || !inHand {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, time.Until(deadline)/2)
}

// asking is the credential a token request asks the login host with,
// and the count of builds that made it.
type asking struct {
	tc  azcore.TokenCredential
	gen uint64
}

// answer answers a token request without asking the login host where
// it can: a changed or refused credential built again first, then the
// cached token, or the refusal held. Otherwise it returns the credential
// to ask the login host with.
func (c *Credential) answer(ctx context.Context, reusable bool, scopes string) (azcore.AccessToken, *asking, error) {
	// A token in hand, the common case, is handed out with one look at
	// the clock: a look costs most of what such a call does. A token
	// that may still be handed out is not past its reuse.
	c.mu.Lock()
	now := c.now()
	if reusable && c.scopes == scopes && c.fresh(now) && !c.reload && !c.fileChanged(now) {
		tok := c.token
		c.mu.Unlock()
		return tok, nil, nil
	}
	c.mu.Unlock()
	if c.stale() {
		if err := c.rebuildStale(); err != nil {
			// Not final: a file being rewritten can read empty for a moment;
			// the next request reads it again. Meanwhile a token the file's
			// last good content got serves until it expires: a file gone
			// or broken fails the tenant's calls only once it has.
			c.mu.Lock()
			te := c.credentialError()
			c.mu.Unlock()
			tok, err := c.lastResort(ctx, reusable, scopes, te)
			return tok, nil, err
		}
	}
	c.mu.Lock()
	tc, gen := c.current, c.gen
	if reusable && c.scopes == scopes && c.fresh(c.now()) {
		tok := c.token
		c.mu.Unlock()
		return tok, nil, nil
	}
	te, heldFor := c.holding()
	c.mu.Unlock()
	if te != nil && (!te.Final || sendsAgain(ctx, tc, heldFor)) {
		if te.Final {
			c.readAgain(gen)
		}
		tok, err := c.lastResort(ctx, reusable, scopes, te)
		return tok, nil, err
	}
	return azcore.AccessToken{}, &asking{tc, gen}, nil
}

// lastResort answers a token request the login host could not answer
// now, with te, the reason: the token in hand when it is past its reuse
// but has more than lastTokenUse left (and was got within
// maxTokenReuse), as azcore's own token refresh keeps its token while a
// refresh fails. The API takes it until it expires: a login host that
// throttles, fails or hangs in a token's last 5 minutes (or after its
// refresh_in, hours before its end) failed every call of the tenant,
// each request counting an attempt; so did a credential file that
// changed into one that cannot be used, though its last token was good
// for 5 minutes more. A refusal of the credentials is not covered so:
// it stands; nor is a call whose time ran out (a login host that hung):
// it has no time left to send a token, and its failure would read as no
// connection to the API.
func (c *Credential) lastResort(ctx context.Context, reusable bool, scopes string, te *TokenError) (azcore.AccessToken, error) {
	if te.Final || ctx.Err() != nil {
		return azcore.AccessToken{}, te
	}
	if tok, ok := c.inHand(reusable, scopes); ok {
		c.tellInHand(te)
		return tok, nil
	}
	return azcore.AccessToken{}, te
}

// inHand returns the token in hand for scopes while it may be handed
// out when no other can be had (tokenEnd).
func (c *Credential) inHand(reusable bool, scopes string) (azcore.AccessToken, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !reusable || c.scopes != scopes || c.token.Token == "" || !c.now().Before(c.tokenEnd) {
		return azcore.AccessToken{}, false
	}
	return c.token, true
}

// ask returns once the call may ask the login host for a token, and the
// function that lets the next one; an error when ctx ends first. While
// another call asks, it returns at once, without the function, the
// token in hand when lastResort would hand it out: a login host that
// hangs held each call its whole time.
func (c *Credential) ask(ctx context.Context, reusable bool, scopes string) (func(), azcore.AccessToken, error) {
	c.mu.Lock()
	if c.asking == nil {
		c.asking = make(chan struct{}, 1)
	}
	turn := c.asking
	c.mu.Unlock()
	select {
	case turn <- struct{}{}:
		return func() { <-turn }, azcore.AccessToken{}, nil
	default:
	}
	if tok, ok := c.inHand(reusable, scopes); ok {
		return nil, tok, nil
	}
	select {
	case turn <- struct{}{}:
		return func() { <-turn }, azcore.AccessToken{}, nil
	case <-ctx.Done():
		return nil, azcore.AccessToken{}, ctx.Err()
	}
}

// readAgain has the credential's files read again at the next token
// request, after the login host refused what gen was built from: the
// file may hold another secret than the one read, rewritten in place
// with its size and time; read again, it ends the refusal's hold rather
// than wait for it (or be refused until a restart). A file gone
// meanwhile is the failure then, and the refused secret is not sent
// again. A federated token file is read again so too: its token read
// was kept up to tokenFileReuse, the refused token answering the hold
// and sent again once it was over. The token in hand is no longer handed
// out past its reuse (lastResort): a credential without files to read
// again (a managed identity, a secret from the environment, a federated
// token) kept it, and the calls that came while another asked the login
// host again were sent the token of the refused credentials.
func (c *Credential) readAgain(gen uint64) {
	c.mu.Lock()
	if c.gen != gen {
		c.mu.Unlock()
		return
	}
	if len(c.watch) > 0 {
		c.reload = true
	}
	c.tokenEnd = time.Time{}
	w, _ := c.current.(*workloadCredential)
	c.mu.Unlock()
	if w != nil {
		// Not under c.mu: the file's clock is the credential's, which
		// takes it.
		w.file.forget()
	}
}

// sourceOf tells what tc sends to the login host from what it sent
// before, without holding it: a secret, certificates, a federated
// token. A credential that cannot tell (a managed identity's) always
// sends the same. False: its file cannot be read.
func sourceOf(ctx context.Context, tc azcore.TokenCredential) (tokenID, bool) {
	s, ok := tc.(interface {
		source(context.Context) (tokenID, bool)
	})
	if !ok {
		return tokenID{}, true
	}
	return s.source(ctx)
}

// sendsAgain says whether tc would send the login host what id tells
// again. One whose file cannot be read sends nothing: its token request
// fails without asking the login host, naming the file.
func sendsAgain(ctx context.Context, tc azcore.TokenCredential, id tokenID) bool {
	now, ok := sourceOf(ctx, tc)
	return ok && now == id
}

// hold keeps a refusal that asks for a wait (TokenError.RetryAfter) to
// answer the token requests until the wait is over, and a final one for
// refusalHold while the credential sends what source tells.
func (c *Credential) hold(te *TokenError, source tokenID) {
	wait := te.RetryAfter
	if te.Final {
		wait = refusalHold
	}
	if wait <= 0 {
		return
	}
	c.mu.Lock()
	c.heldUntil, c.held, c.heldFor = c.now().Add(wait), *te, source
	c.mu.Unlock()
}

// holding returns the refusal held while its hold is not over, with the
// login host's wait left in it, and what the refused credential sent;
// nil once it is. c.mu is held.
func (c *Credential) holding() (*TokenError, tokenID) {
	now := c.now()
	if !now.Before(c.heldUntil) {
		return nil, tokenID{}
	}
	te := c.held
	if !te.Final {
		te.RetryAfter = c.heldUntil.Sub(now)
	}
	return &te, c.heldFor
}

// ofTenant says whether a token is of the Entra ID tenant tenantID, as
// its tid claim says; a token that is no JWT, or has no tid, is taken.
// A managed identity gets tokens of its own tenant only, whatever the
// tenantId beside it: with another tenant's id, every call acted in the
// identity's tenant, a device looked up there by name offboarded. The
// claim is read, not verified: the API verifies the token.
func ofTenant(token, tenantID string) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || tenantID == "" {
		return true
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	var claims struct {
		TenantID string `json:"tid"`
	}
	if err != nil || json.Unmarshal(payload, &claims) != nil || claims.TenantID == "" {
		return true
	}
	return strings.EqualFold(claims.TenantID, tenantID)
}

// sendable says whether a token can be sent: a control character (a line
// break) in it fails each request in the transport, after the call was
// counted as one that may have reached the API.
func sendable(token string) bool {
	return token != "" && !strings.ContainsFunc(token, func(r rune) bool { return r < ' ' || r == 0x7f })
}

// unsendable is the error of a token the login host gave that cannot be
// sent. The credential that got it, whose cache holds it, is built again
// at the next token request.
func (c *Credential) unsendable(gen uint64) *TokenError {
	c.mu.Lock()
	if c.gen == gen {
		c.reload = true
	}
	c.mu.Unlock()
	return &TokenError{Host: c.host, managed: c.managed, failure: failUnreadable}
}

// stale says whether the credential must be built again before a token
// is asked of it: its file changed, or what it holds was refused, or its
// cache holds a token past its reuse (outlived).
func (c *Credential) stale() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	return c.reload || c.fileChanged(now) || c.outlived(now) || c.renewedAt(now)
}

// renewedAt says whether another certificate of the key in the
// credential's file has started by now (certificateCredential.renewed).
// c.mu is held.
func (c *Credential) renewedAt(now time.Time) bool {
	cc, ok := c.current.(certificateCredential)
	return ok && !cc.renewed.IsZero() && !now.Before(cc.renewed)
}

// rebuildStale builds the credential again, unless another call did
// while this one waited for it: the calls that found it stale share one
// rebuild, and the one token request that follows.
func (c *Credential) rebuildStale() error {
	c.renew.Lock()
	defer c.renew.Unlock()
	if !c.stale() {
		return nil
	}
	return c.refresh()
}

// fresh says whether the cached token may still be handed out at now.
// c.mu held.
func (c *Credential) fresh(now time.Time) bool {
	return c.token.Token != "" && now.Before(c.tokenUntil)
}

// outlived says whether the cached token is no longer handed out while
// the identity library would hand it out again from its own cache: its
// reuse was cut to maxTokenReuse. Only a credential built again, whose
// cache is empty, asks the login host. c.mu is held.
func (c *Credential) outlived(now time.Time) bool {
	if c.token.Token == "" || c.fresh(now) {
		return false
	}
	next := c.token.ExpiresOn.Add(-tokenMargin)
	if !c.token.RefreshOn.IsZero() && c.token.RefreshOn.Before(next) {
		next = c.token.RefreshOn
	}
	return c.tokenUntil.Before(next)
}
