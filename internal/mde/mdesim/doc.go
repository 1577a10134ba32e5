// Package mdesim is an in-process simulator of the Microsoft Defender for
// Endpoint (MDE) API and of the Entra ID (Azure AD) token endpoint.
//
// It is meant for integration tests, benchmarks and demos, in the manner of
// net/http/httptest: create a Server with New, register tenants and
// machines, start it with StartTLS and point the client at the returned base
// URL, used both as the login authority host and as the API base. The
// simulator imitates the documented and observed behaviour of the real
// service: client-credential tokens, app roles, the offboard call and its
// Machine Action, OData $filter/$top/$skip on list calls, the per
// application-and-tenant rate limits with 429 and Retry-After, and the AAD
// and MDE error shapes. Faults (5xx, spurious 404s, latency, injected
// statuses) can be added to exercise retry logic, and login faults
// (LoginGarbled, LoginRefusedLongBody) give answers carrying a token or a
// long body that a client must not repeat.
//
// All time-dependent behaviour uses Options.Clock, so tests can drive rate
// windows, token expiry and action progress with a fake clock.
//
// Clients using MSAL or azidentity must disable instance discovery
// (DisableInstanceDiscovery: true), since MSAL would otherwise ask
// login.microsoftonline.com about the simulator's host.
package mdesim
