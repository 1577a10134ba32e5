package mde

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode"
)

// Cloud is where a tenant lives: its login host, API host and token scope.
type Cloud struct {
	Name          string
	AuthorityHost string
	APIBaseURL    string
	Scope         string
}

// Clouds lists the national clouds Defender for Endpoint runs in. The hosts
// and the commercial scope are documented by Microsoft ("Supported Microsoft
// Defender for Endpoint APIs", "Microsoft Defender for Endpoint for US
// Government customers"); the government token scopes are not, so these are
// the API host followed by /.default and can be overridden per tenant.
var Clouds = map[string]Cloud{
	"commercial": {
		Name:          "commercial",
		AuthorityHost: "https://login.microsoftonline.com",
		APIBaseURL:    "https://api.securitycenter.microsoft.com",
		Scope:         "https://api.securitycenter.microsoft.com/.default",
	},
	"gcc": {
		Name:          "gcc",
		AuthorityHost: "https://login.microsoftonline.com",
		APIBaseURL:    "https://api-gcc.securitycenter.microsoft.us",
		Scope:         "https://api-gcc.securitycenter.microsoft.us/.default",
	},
	"gcc-high": {
		Name:          "gcc-high",
		AuthorityHost: "https://login.microsoftonline.us",
		APIBaseURL:    "https://api-gov.securitycenter.microsoft.us",
		Scope:         "https://api-gov.securitycenter.microsoft.us/.default",
	},
	"dod": {
		Name:          "dod",
		AuthorityHost: "https://login.microsoftonline.us",
		APIBaseURL:    "https://api-gov.securitycenter.microsoft.us",
		Scope:         "https://api-gov.securitycenter.microsoft.us/.default",
	},
}

// ResolveCloud returns the cloud of the given name with the overrides
// applied. The scope follows the cloud, not the API host, unless scope is
// set: a geo host or a simulator takes the cloud's usual token.
func ResolveCloud(name, apiBaseURL, authorityHost, scope string) (Cloud, error) {
	if name == "" {
		name = "commercial"
	}
	c, ok := Clouds[name]
	if !ok {
		// Not quoted: a value that is no cloud could be anything, a
		// secret pasted in the wrong place included.
		if _, ok := Clouds[strings.ToLower(name)]; ok {
			return Cloud{}, errors.New("cloud: want commercial, gcc, gcc-high or dod, in lower case")
		}
		return Cloud{}, errors.New("cloud: want commercial, gcc, gcc-high or dod")
	}
	if apiBaseURL != "" {
		u, err := checkEndpoint(apiBaseURL)
		if err != nil {
			return Cloud{}, fmt.Errorf("apiBaseURL: %w", err)
		}
		c.APIBaseURL = u
	}
	if authorityHost != "" {
		u, err := checkEndpoint(authorityHost)
		if err != nil {
			return Cloud{}, fmt.Errorf("authorityHost: %w", err)
		}
		if !strings.HasPrefix(u, "https://") {
			return Cloud{}, fmt.Errorf("authorityHost %q: the login host must use https", authorityHost)
		}
		// The identity library puts the tenant's id after the host and
		// reads the path's first segment as the tenant: an authority
		// (the host and the tenant's id, or the token URL) sent every
		// token request to /{tenantId}/{tenantId}/..., any other path
		// was dropped.
		if p, err := url.Parse(u); err != nil || p.Path != "" {
			return Cloud{}, fmt.Errorf("authorityHost %q: want the login host alone, without a path, such as https://login.microsoftonline.us: the tenant's id (tenantId) and the token path are put after it", shownURL(u))
		}
		c.AuthorityHost = u
	}
	if scope != "" {
		if !defaultScope(scope) {
			// Not quoted: a value that is no scope could be anything, a
			// secret pasted in the wrong place included.
			return Cloud{}, errors.New(`scope: want one resource followed by "/.default", such as https://securitycenter.onmicrosoft.us/windowsatpservice/.default, without white space: a client credentials token is asked for no other scope`)
		}
		c.Scope = scope
	}
	return c, nil
}

// defaultScope says whether scope is one resource's "/.default" scope,
// the only kind a client credentials token is issued for: the login host
// refuses any other (a permission's scope, a resource without
// "/.default", two scopes) at every token request, and only then.
func defaultScope(scope string) bool {
	const suffix = "/.default"
	n := len(scope) - len(suffix) // the resource's length
	return n > 0 && equalFoldASCII(scope[n:], suffix) && !strings.ContainsFunc(scope, invisible)
}

// invisible says whether r is white space, a format character (a
// zero-width space, a byte order mark), or any other character outside
// ASCII, among them those that show as blank (a Hangul filler, a Braille
// blank, a combining grapheme joiner): nothing a URL of a login or API
// host holds as written. A host's international name is written in its
// xn-- form, a path's other characters percent-encoded.
func invisible(r rune) bool {
	return unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) || r > unicode.MaxASCII
}

// checkEndpoint accepts https URLs, and http only for loopback hosts, and
// returns the URL without a trailing slash. Its errors name the URL as
// shownURL gives it, never as written: it may carry a password or a key;
// a value without a scheme not at all.
func checkEndpoint(raw string) (string, error) {
	if !strings.Contains(raw, "://") {
		// Not quoted: a value with no scheme is no URL, and could be
		// anything, a secret pasted in the wrong place included.
		return "", errors.New("not a URL: want scheme://host[:port][/path]")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// Not quoted: what does not parse may hold a password where the
		// host or the port belongs ("https://user:password" without its
		// '@' and host), which no '@' marks to be left out.
		return "", errors.New("not a URL (it does not parse; a port must be a number, a character outside a URL percent-encoded): want scheme://host[:port][/path]")
	}
	if h := u.Hostname(); h != "" && !hostName(h) {
		// Not quoted, and before the checks that show the URL: a secret
		// pasted as the host (a client secret has a '~') would be named
		// in each error of every call, the dial's own included.
		return "", errors.New("the host is no host name or IP address (letters, digits, '-', '_' and '.'; an international name in its xn-- form): want scheme://host[:port][/path]")
	}
	if strings.ContainsFunc(raw, invisible) {
		// A space copied along, quoted in YAML: url.Parse takes it into
		// the path as %20, and every call would go to a path no service
		// has. So for a zero-width space or a byte order mark, in the
		// path or the host, and any other character outside ASCII.
		return "", fmt.Errorf("%q: white space, an invisible character or one outside ASCII in the URL (write a host in its xn-- form, a path percent-encoded): want scheme://host[:port][/path]", shownURL(raw))
	}
	if u.User != nil {
		return "", fmt.Errorf("%q: want scheme://host[:port][/path], without credentials", shownURL(raw))
	}
	if u.Host == "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", fmt.Errorf("%q: want scheme://host[:port][/path], without credentials, query or fragment", shownURL(raw))
	}
	// An '@' past the host: a '/' in a user, password or token ended the
	// authority early. What came before it would be dialled as the host
	// (and named in every error of the login or API host).
	if strings.Contains(u.Path, "@") {
		return "", fmt.Errorf("%q: an '@' after the host (a '/' in a user, password or token?): want scheme://host[:port][/path], without credentials", shownURL(raw))
	}
	// url.Parse takes any digits as a port: one no host has would fail
	// every dial, after the file was found valid.
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%q: the port must be 1 to 65535", shownURL(raw))
		}
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return "", fmt.Errorf("%q: plain http is allowed only for loopback hosts", shownURL(raw))
		}
	default:
		return "", fmt.Errorf("%q: scheme must be https", shownURL(raw))
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// hostName says whether host is an IP address or a name the resolver
// looks up: labels of letters, digits, '-' and '_' between dots. Any
// other name fails every dial, "no such host", naming it. Characters
// outside ASCII are left to the check of invisible ones, whose error
// says more.
func hostName(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return !strings.ContainsFunc(host, func(r rune) bool {
		return r <= unicode.MaxASCII && (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '_' && r != '.'
	})
}

// shownURL is a URL as an error may show it: without anything up to its
// last '@' (a user and password, also one whose '/', '?' or '#' ended the
// host early, or that does not parse), or up to an at sign of another
// width written in its place, and without a query or fragment (an API
// key, a signature, a token). It is cut from the text, not parsed: the
// text may not be a URL.
func shownURL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || strings.ContainsFunc(scheme, func(r rune) bool { return !isSchemeRune(r) }) {
		scheme, rest = "", raw
	}
	rest = afterLastAt(rest)
	if end := strings.IndexAny(rest, "?#"); end >= 0 {
		rest = rest[:end]
	}
	if scheme != "" {
		rest = scheme + "://" + rest
	}
	return rest
}

// atSigns are the characters that end a URL's user information: '@', and
// those a hand or an input method may write in its place (the fullwidth
// and the small commercial at, which read as '@' once normalised, NFKC).
// Such a URL is refused, and the credential before the sign is not shown.
var atSigns = []string{"@", "\uff20", "\ufe6b"}

// afterLastAt is s after its last at sign (atSigns); s if it has none.
func afterLastAt(s string) string {
	for _, at := range atSigns {
		if i := strings.LastIndex(s, at); i >= 0 {
			s = s[i+len(at):]
		}
	}
	return s
}

func isSchemeRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.'
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
