// Package mde talks to the Microsoft Defender for Endpoint API: app-only
// tokens, the offboard call, the reads that go with it, and the one place
// where every answer is classified.
package mde
