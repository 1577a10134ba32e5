// Command mdesim runs the Defender for Endpoint and Entra ID simulator of
// package mdesim as a standalone HTTPS server, for demos and manual tests.
//
// The base URL it prints serves as both the login authority host and the API
// base. The server certificate is self-signed; --ca-out writes it in PEM form
// for clients to trust.
package main
