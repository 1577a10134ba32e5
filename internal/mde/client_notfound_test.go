package mde

import (
	"context"
	"testing"
)

// A 404 that is not the List machines API's own answer (a proxy's or a
// web server's page, or the API's "no such route" to a base URL with a
// path too many, as https://api.security.microsoft.com/api) is no
// empty list: read as one, a campaign plan of a misconfigured tenant
// says it found no stale device, and every name lookup fails at once.
func TestClientMachineListNotFoundOfAnotherPath(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"a web server's page": "404 page not found\n",
		"an empty body":       "",
		// Another service's error object, its code a number: decoded
		// whole, it was no API error body at all.
		"another service's error": `{"error":{"code":404,"message":"Not Found"}}`,
		"the API's route miss":    `{"error":{"code":"NotFound","message":"No HTTP resource was found that matches the request URI 'https://api.security.microsoft.com/api/api/machines'.","target":"c8"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := setupAPI(t, answerWith(404, nil, body), nil)
			for call, v := range map[string]*Verdict{
				"ListMachines":       f.client.ListMachines(context.Background(), "", MaxPage, 0),
				"FindMachinesByName": f.client.FindMachinesByName(context.Background(), "pc-1.contoso.local"),
			} {
				if v.Class == Success {
					t.Errorf("%s: a 404 of %s read as an empty list (body %q)", call, name, v.Body)
				}
			}
		})
	}
}

// The API's own 404 stays an empty list with a member left out or null.
func TestClientMachineListNotFoundWithoutTarget(t *testing.T) {
	t.Parallel()
	f := setupAPI(t, answerWith(404, nil, `{"error":{"code":"NotFound","message":"No machines found","target":null}}`), nil)
	if v := f.client.ListMachines(context.Background(), "", MaxPage, 0); v.Class != Success {
		t.Errorf("target null: %v %s", v.Class, v.Error())
	}
	f = setupAPI(t, answerWith(404, nil, `{"error":{"code":"NotFound","message":"No machines found"}}`), nil)
	if v := f.client.FindMachinesByName(context.Background(), "pc-1.contoso.local"); v.Class != Success {
		t.Errorf("no target: %v %s", v.Class, v.Error())
	}
}
