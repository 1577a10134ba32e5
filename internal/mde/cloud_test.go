package mde

import (
	"strings"
	"testing"
)

func TestResolveCloud(t *testing.T) {
	t.Parallel()
	const (
		comScope = "https://api.securitycenter.microsoft.com/.default"
		gccScope = "https://api-gcc.securitycenter.microsoft.us/.default"
		govScope = "https://api-gov.securitycenter.microsoft.us/.default"
	)
	tests := []struct {
		name                             string
		cloud, apiBase, authority, scope string
		want                             Cloud
	}{
		{
			name:  "commercial",
			cloud: "commercial",
			want:  Cloud{"commercial", "https://login.microsoftonline.com", "https://api.securitycenter.microsoft.com", comScope},
		},
		{
			name: "empty name is commercial",
			want: Cloud{"commercial", "https://login.microsoftonline.com", "https://api.securitycenter.microsoft.com", comScope},
		},
		{
			name:  "gcc",
			cloud: "gcc",
			want:  Cloud{"gcc", "https://login.microsoftonline.com", "https://api-gcc.securitycenter.microsoft.us", gccScope},
		},
		{
			name:  "gcc-high",
			cloud: "gcc-high",
			want:  Cloud{"gcc-high", "https://login.microsoftonline.us", "https://api-gov.securitycenter.microsoft.us", govScope},
		},
		{
			name:  "dod",
			cloud: "dod",
			want:  Cloud{"dod", "https://login.microsoftonline.us", "https://api-gov.securitycenter.microsoft.us", govScope},
		},
		{
			name:    "geo host keeps the commercial scope",
			cloud:   "commercial",
			apiBase: "https://eu.api.security.microsoft.com",
			want:    Cloud{"commercial", "https://login.microsoftonline.com", "https://eu.api.security.microsoft.com", comScope},
		},
		{
			name:    "gov API override keeps the gov scope",
			cloud:   "gcc-high",
			apiBase: "https://proxy.contoso.us/mde",
			want:    Cloud{"gcc-high", "https://login.microsoftonline.us", "https://proxy.contoso.us/mde", govScope},
		},
		{
			name:  "scope override",
			cloud: "gcc-high",
			scope: "https://securitycenter.onmicrosoft.us/windowsatpservice/.default",
			want:  Cloud{"gcc-high", "https://login.microsoftonline.us", "https://api-gov.securitycenter.microsoft.us", "https://securitycenter.onmicrosoft.us/windowsatpservice/.default"},
		},
		{
			name:    "http on 127.0.0.1 with a port",
			cloud:   "commercial",
			apiBase: "http://127.0.0.1:8080",
			want:    Cloud{"commercial", "https://login.microsoftonline.com", "http://127.0.0.1:8080", comScope},
		},
		{
			name:    "http on localhost",
			cloud:   "commercial",
			apiBase: "http://localhost",
			want:    Cloud{"commercial", "https://login.microsoftonline.com", "http://localhost", comScope},
		},
		{
			name:    "http on ::1",
			cloud:   "commercial",
			apiBase: "http://[::1]:8443",
			want:    Cloud{"commercial", "https://login.microsoftonline.com", "http://[::1]:8443", comScope},
		},
		{
			name:    "http on 127.0.0.2",
			cloud:   "commercial",
			apiBase: "http://127.0.0.2:1",
			want:    Cloud{"commercial", "https://login.microsoftonline.com", "http://127.0.0.2:1", comScope},
		},
		{
			name:    "trailing slashes trimmed",
			cloud:   "commercial",
			apiBase: "https://api.securitycenter.microsoft.com/",
			want:    Cloud{"commercial", "https://login.microsoftonline.com", "https://api.securitycenter.microsoft.com", comScope},
		},
		{
			name:    "trailing slash trimmed after a path",
			cloud:   "commercial",
			apiBase: "http://127.0.0.1:8080/sim//",
			want:    Cloud{"commercial", "https://login.microsoftonline.com", "http://127.0.0.1:8080/sim", comScope},
		},
		{
			name:      "authority override",
			cloud:     "commercial",
			apiBase:   "https://127.0.0.1:9443",
			authority: "https://127.0.0.1:9443/",
			want:      Cloud{"commercial", "https://127.0.0.1:9443", "https://127.0.0.1:9443", comScope},
		},
		{
			// Host names of every form a resolver looks up: an
			// underscore, a final dot, an international name in its
			// xn-- form, an IPv6 address with its zone.
			name:      "host names",
			cloud:     "commercial",
			apiBase:   "https://mde_gw.xn--bcher-kva.example.:8443",
			authority: "https://[fe80::1%25eth0]:9443",
			want:      Cloud{"commercial", "https://[fe80::1%25eth0]:9443", "https://mde_gw.xn--bcher-kva.example.:8443", comScope},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ResolveCloud(tt.cloud, tt.apiBase, tt.authority, tt.scope)
			if err != nil {
				t.Fatalf("ResolveCloud: %v", err)
			}
			if got != tt.want {
				t.Errorf("ResolveCloud = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestResolveCloudRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                             string
		cloud, apiBase, authority, scope string
		wantInErr                        string
	}{
		{name: "unknown cloud", cloud: "china", wantInErr: "cloud: want commercial"},
		{name: "cloud names are exact", cloud: "Commercial", wantInErr: "in lower case"},
		{name: "unknown cloud not quoted", cloud: "Abc8Q~S3cret", wantInErr: "cloud: want commercial"},
		{name: "http on a public host", apiBase: "http://example.com", wantInErr: "apiBaseURL"},
		{name: "http on a name that starts like localhost", apiBase: "http://localhost.example.com", wantInErr: "apiBaseURL"},
		{name: "http on a name that starts like loopback", apiBase: "http://127.0.0.1.example.com", wantInErr: "apiBaseURL"},
		{name: "http on a private address", apiBase: "http://10.0.0.1:8080", wantInErr: "apiBaseURL"},
		{name: "ftp", apiBase: "ftp://127.0.0.1/", wantInErr: "apiBaseURL"},
		{name: "no scheme", apiBase: "api.securitycenter.microsoft.com", wantInErr: "apiBaseURL"},
		{name: "no host", apiBase: "https:///api", wantInErr: "apiBaseURL"},
		{name: "opaque", apiBase: "https:api.securitycenter.microsoft.com", wantInErr: "apiBaseURL"},
		{name: "user and password", apiBase: "https://user:pass@api.securitycenter.microsoft.com", wantInErr: "apiBaseURL"},
		{name: "user only", apiBase: "https://user@api.securitycenter.microsoft.com", wantInErr: "apiBaseURL"},
		{name: "query", apiBase: "https://api.securitycenter.microsoft.com/?x=1", wantInErr: "apiBaseURL"},
		{name: "fragment", apiBase: "https://api.securitycenter.microsoft.com/#x", wantInErr: "apiBaseURL"},
		{name: "not a URL", apiBase: "https://api.securitycenter.microsoft.com:port", wantInErr: "apiBaseURL"},
		// A port no host has: every call would fail to dial, after
		// --check-config said the file was valid.
		{name: "port out of range", apiBase: "https://api.securitycenter.microsoft.com:99999", wantInErr: "apiBaseURL"},
		{name: "port zero", apiBase: "https://127.0.0.1:0", wantInErr: "apiBaseURL"},
		// A space copied along with the URL, quoted in YAML: the calls
		// went to a path ending in %20, each answered 404.
		{name: "trailing space", apiBase: "https://api.securitycenter.microsoft.com/ ", wantInErr: "apiBaseURL"},
		{name: "tab in the path", apiBase: "https://api.securitycenter.microsoft.com/\tapi", wantInErr: "apiBaseURL"},
		{name: "authority with a trailing space", authority: "https://login.microsoftonline.com/ ", wantInErr: "authorityHost"},
		// An invisible character copied along (a zero-width space, a
		// byte order mark) is no white space, and as unknown to every
		// host and path.
		{name: "zero-width space in the path", apiBase: "https://api.securitycenter.microsoft.com/\u200b", wantInErr: "apiBaseURL"},
		{name: "byte order mark after the host", authority: "https://login.microsoftonline.com\ufeff", wantInErr: "authorityHost"},
		// Nor are the characters that show as blank without being format
		// characters (a Hangul filler, a Braille blank, a combining
		// grapheme joiner): no login or API host or path has one, and
		// one that did would be written in its xn-- form or
		// percent-encoded.
		{name: "Hangul filler after the host", apiBase: "https://api.securitycenter.microsoft.com\u3164", wantInErr: "apiBaseURL"},
		{name: "Braille blank after the host", authority: "https://login.microsoftonline.com\u2800", wantInErr: "authorityHost"},
		{name: "combining grapheme joiner in the path", apiBase: "https://api.securitycenter.microsoft.com/\u034f", wantInErr: "apiBaseURL"},
		{name: "authority port out of range", authority: "https://login.microsoftonline.com:65536", wantInErr: "authorityHost"},
		{name: "authority over http on loopback", authority: "http://127.0.0.1:8080", wantInErr: "authorityHost"},
		{name: "authority over http on localhost", authority: "http://localhost", wantInErr: "authorityHost"},
		{name: "authority over http on a public host", authority: "http://login.microsoftonline.com", wantInErr: "authorityHost"},
		{name: "authority with credentials", authority: "https://u:p@login.microsoftonline.com", wantInErr: "authorityHost"},
		{name: "authority with a query", authority: "https://login.microsoftonline.com?x=1", wantInErr: "authorityHost"},
		// A client credentials token is asked for "<resource>/.default"
		// alone: any other scope is refused by the login host at every
		// token request, after --check-config said the file was valid.
		{name: "scope without /.default", scope: "https://securitycenter.onmicrosoft.us/windowsatpservice", wantInErr: "scope"},
		{name: "scope of a permission", scope: "https://api.securitycenter.microsoft.com/Machine.Offboard", wantInErr: "scope"},
		{name: "scope of no resource", scope: "/.default", wantInErr: "scope"},
		{name: "two scopes", scope: "https://api.securitycenter.microsoft.com/.default https://securitycenter.onmicrosoft.com/windowsatpservice/.default", wantInErr: "scope"},
		{name: "scope with a trailing tab", scope: "https://api.securitycenter.microsoft.com/.default\t", wantInErr: "scope"},
		{name: "scope not quoted", scope: "Abc8Q~S3cret", wantInErr: "scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ResolveCloud(tt.cloud, tt.apiBase, tt.authority, tt.scope)
			if err == nil {
				t.Fatalf("ResolveCloud = %+v, want an error", got)
			}
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("error %q does not name %q", err, tt.wantInErr)
			}
			if strings.Contains(err.Error(), "S3cret") {
				t.Errorf("error %q quotes the cloud", err)
			}
			if strings.Contains(err.Error(), ":pass@") || strings.Contains(err.Error(), ":p@") {
				t.Errorf("error %q shows the URL's password", err)
			}
			if got != (Cloud{}) {
				t.Errorf("ResolveCloud returned %+v with its error, want the zero Cloud", got)
			}
		})
	}
}

// ResolveCloud hands out copies: an override never changes the table.
func TestResolveCloudKeepsTable(t *testing.T) {
	t.Parallel()
	if _, err := ResolveCloud("gcc", "http://127.0.0.1:1", "https://127.0.0.1:2", "https://custom.example/.default"); err != nil {
		t.Fatalf("ResolveCloud: %v", err)
	}
	c := Clouds["gcc"]
	if c.APIBaseURL != "https://api-gcc.securitycenter.microsoft.us" || c.AuthorityHost != "https://login.microsoftonline.com" ||
		c.Scope != "https://api-gcc.securitycenter.microsoft.us/.default" {
		t.Errorf("Clouds[gcc] = %+v after an override", c)
	}
	for name, c := range Clouds {
		if c.Name != name {
			t.Errorf("Clouds[%q].Name = %q", name, c.Name)
		}
		if !isMicrosoftLogin(c.AuthorityHost) || !isMicrosoftLogin(c.AuthorityHost+"/") {
			t.Errorf("isMicrosoftLogin(%q) = false", c.AuthorityHost)
		}
	}
	if isMicrosoftLogin("https://127.0.0.1:9443") {
		t.Errorf("isMicrosoftLogin(simulator) = true: instance discovery would reach the public cloud")
	}
}

// A refused endpoint is named without what could be a credential: the
// user information (also when it does not parse, or when a '/', '?' or '#'
// in its password ended the host early), the query and the fragment. The
// error ends the start, and --check-config prints it.
func TestResolveCloudRefusalShowsNoCredential(t *testing.T) {
	t.Parallel()
	const secret = "S3cretPw"
	for _, raw := range []string{
		"https://user:" + secret + "%zz@api.example.com",     // bad escape: does not parse
		"https://user:" + secret + "/x@api.example.com",      // '/' in the password: a bad port
		"https://user:12#" + secret + "@api.example.com",     // '#' in the password: a fragment
		"https://user:12?" + secret + "@api.example.com",     // '?' in the password: a query
		"user:" + secret + "@api.example.com",                // no scheme
		"https://api.example.com/?code=" + secret,            // a key in the query
		"https://api.example.com/#access_token=" + secret,    // a token in the fragment
		"http://user:" + secret + "%zz@10.0.0.1",             // plain http elsewhere
		"ftp://user:" + secret + "%zz@api.example.com/x?y#z", // another scheme
		"user:" + secret + "@api.example.com://x",            // no scheme before the user
		"https://" + secret + "/x@api.example.com",           // '/' in a token: the host taken from it
		"https://user:12/" + secret + "@api.example.com",     // '/' in a password of digits: a good port
		"http://" + secret + "/x@127.0.0.1",                  // the same on loopback
		secret,                                               // a secret pasted in place of the URL
		"Abc8Q~" + secret + ".value",                         // a client secret's form
		secret + "/api",                                      // no scheme, a path
		"api.example.com:" + secret,                          // no scheme, what reads as one
		// An at sign of another width, typed with an East Asian input
		// method or copied from a page, where the '@' belongs: no
		// '@' ends the credential, and the URL is refused for it.
		"https://" + secret + "\uff20api.example.com",          // a token and a fullwidth '@'
		"https://user:" + secret + "\uff20api.example.com",     // a password and a fullwidth '@'
		"https://" + secret + "\ufe6bapi.example.com",          // a token and a small '@'
		"https://user:" + secret + "\ufe6bapi.example.com/x",   // a password and a small '@'
		"https://user:" + secret + "\uff20api.example.com?x#y", // with a query and a fragment
		// A user and password without their '@' and host: the password
		// reads as a port, which does not parse.
		"https://user:" + secret,
		"https://user:" + secret + "/path",
		"https://api.example.com:" + secret, // a secret where the port belongs
		// A client secret pasted as the host: no host name has a '~'.
		// Accepted, it was named in each error of every call ("no
		// answer from the login host Abc8Q~...", "lookup Abc8Q~...: no
		// such host"), in results, dead letters and logs.
		"https://Abc8Q~" + secret + ".value",
		"https://Abc8Q~" + secret + ".value/api",
		"https://Abc8Q~" + secret + ".value:443",
		"https://Abc8Q~" + secret + ".value/?x=1",            // refused for its query too
		"https://Abc8Q~" + secret + ".value\u200b",           // and for an invisible character
		"http://Abc8Q~" + secret + ".value",                  // plain http elsewhere
		"https://user:pw@Abc8Q~" + secret + ".value",         // and for its credentials
		"https://Abc8Q~" + secret + ".value/#access_token=x", // and for its fragment
	} {
		for _, field := range []string{"apiBaseURL", "authorityHost"} {
			var err error
			if field == "apiBaseURL" {
				_, err = ResolveCloud("", raw, "", "")
			} else {
				_, err = ResolveCloud("", "", raw, "")
			}
			if err == nil {
				t.Errorf("%s %q: no error", field, raw)
				continue
			}
			if strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), field) {
				t.Errorf("%s %q: error %q shows the secret or does not name the setting", field, raw, err)
			}
		}
	}
}
