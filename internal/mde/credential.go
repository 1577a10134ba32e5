package mde

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
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
	if len(kinds) != 1 {
		return "", fmt.Errorf("set exactly one of clientSecretFile, clientSecretEnv, certificateFile, workloadIdentity, managedIdentity (got %d: %s)",
			len(kinds), strings.Join(kinds, ", "))
	}
	return kinds[0], nil
}

// Credential is a token source that can be made to forget its cached token,
// after a 401 or when its secret file changes.
type Credential struct {
	build func() (azcore.TokenCredential, error)
	watch string // a file whose change rebuilds the credential

	mu      sync.Mutex
	current azcore.TokenCredential
	stamp   fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
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
	if transport != nil {
		opts.Transport = transport
	}
	// Only the configured login host is contacted: no instance discovery
	// against the public cloud when the host is not one of Microsoft's.
	noDiscovery := !isMicrosoftLogin(c.AuthorityHost)
	cred := &Credential{}
	switch kind {
	case "clientSecretFile":
		cred.watch = cc.ClientSecretFile
		cred.build = func() (azcore.TokenCredential, error) {
			secret, err := readSecret(cc.ClientSecretFile)
			if err != nil {
				return nil, err
			}
			return azidentity.NewClientSecretCredential(cc.TenantID, cc.ClientID, secret,
				&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: noDiscovery})
		}
	case "clientSecretEnv":
		cred.build = func() (azcore.TokenCredential, error) {
			secret := strings.TrimSpace(os.Getenv(cc.ClientSecretEnv))
			if secret == "" {
				return nil, fmt.Errorf("environment variable %s is empty", cc.ClientSecretEnv)
			}
			return azidentity.NewClientSecretCredential(cc.TenantID, cc.ClientID, secret,
				&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: noDiscovery})
		}
	case "certificateFile":
		cred.watch = cc.CertificateFile
		cred.build = func() (azcore.TokenCredential, error) {
			data, err := os.ReadFile(cc.CertificateFile)
			if err != nil {
				return nil, fmt.Errorf("read certificate: %w", err)
			}
			var password []byte
			if cc.CertificatePasswordFile != "" {
				p, err := readSecret(cc.CertificatePasswordFile)
				if err != nil {
					return nil, err
				}
				password = []byte(p)
			}
			certs, key, err := azidentity.ParseCertificates(data, password)
			if err != nil {
				return nil, fmt.Errorf("certificate %s: %w", cc.CertificateFile, err)
			}
			return azidentity.NewClientCertificateCredential(cc.TenantID, cc.ClientID, certs, key,
				&azidentity.ClientCertificateCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: noDiscovery, SendCertificateChain: true})
		}
	case "workloadIdentity":
		cred.build = func() (azcore.TokenCredential, error) {
			return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
				ClientOptions: opts, TenantID: cc.TenantID, ClientID: cc.ClientID,
				TokenFilePath: cc.TokenFile, DisableInstanceDiscovery: noDiscovery,
			})
		}
	case "managedIdentity":
		cred.build = func() (azcore.TokenCredential, error) {
			o := &azidentity.ManagedIdentityCredentialOptions{}
			if cc.ClientID != "" {
				o.ID = azidentity.ClientID(cc.ClientID)
			}
			return azidentity.NewManagedIdentityCredential(o)
		}
	}
	if err := cred.refresh(); err != nil {
		return nil, err
	}
	return cred, nil
}

func isMicrosoftLogin(host string) bool {
	for _, c := range Clouds {
		if strings.EqualFold(strings.TrimRight(host, "/"), c.AuthorityHost) {
			return true
		}
	}
	return false
}

func readSecret(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	s := string(bytes.TrimSpace(data))
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return s, nil
}

func stampOf(path string) fileStamp {
	if path == "" {
		return fileStamp{}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}
}

// refresh builds a new credential, dropping any cached token.
func (c *Credential) refresh() error {
	stamp := stampOf(c.watch)
	tc, err := c.build()
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.current, c.stamp = tc, stamp
	c.mu.Unlock()
	return nil
}

// Invalidate makes the next token request go to the login host, for
// instance after the API answered 401 to a cached token.
func (c *Credential) Invalidate() error { return c.refresh() }

// GetToken returns a token, cached by the underlying credential until
// shortly before it expires. A changed secret or certificate file is picked
// up first.
func (c *Credential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	changed := c.watch != "" && stampOf(c.watch) != c.stamp
	c.mu.Unlock()
	if changed {
		if err := c.refresh(); err != nil {
			// Not final: a file being rewritten can read empty for a moment;
			// the next attempt reads it again.
			return azcore.AccessToken{}, &TokenError{err: err}
		}
	}
	c.mu.Lock()
	tc := c.current
	c.mu.Unlock()
	tok, err := tc.GetToken(ctx, opts)
	if err != nil {
		return azcore.AccessToken{}, classifyTokenError(err)
	}
	return tok, nil
}

// TokenError is a failure to get a token: no API call was sent. Final means
// the login host refused the credentials; otherwise it may work later.
type TokenError struct {
	Final bool
	err   error
}

func (e *TokenError) Error() string { return "get token: " + e.err.Error() }
func (e *TokenError) Unwrap() error { return e.err }

func classifyTokenError(err error) error {
	var afe *azidentity.AuthenticationFailedError
	if errors.As(err, &afe) && afe.RawResponse != nil {
		s := afe.RawResponse.StatusCode
		return &TokenError{Final: s >= 400 && s < 500 && s != http.StatusTooManyRequests && s != http.StatusRequestTimeout, err: err}
	}
	return &TokenError{err: err}
}
