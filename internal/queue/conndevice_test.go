//go:build linux

package queue

import (
	"strings"
	"testing"
)

// TestCheckRefusesADevice: a file flag naming a device that never ends
// (/dev/zero, /dev/urandom) passed the check, being no regular file; the
// client library then read it whole at the connection, and the start
// grew until it ran out of memory, with a runtime stack trace. A device
// is no file to read a certificate, key or credentials from: refused,
// naming the flag. A named pipe is still left to the client
// (TestCheckLeavesAPipeToTheClient).
func TestCheckRefusesADevice(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		flag string
		conn Conn
	}{
		{"--tlsca", Conn{URL: "nats://127.0.0.1:4222", TLSCA: "/dev/zero"}},
		{"--nats-creds", Conn{URL: "nats://127.0.0.1:4222", Creds: "/dev/urandom"}},
		{"--tlscert", Conn{URL: "nats://127.0.0.1:4222", TLSCert: "/dev/zero", TLSKey: "/dev/zero"}},
	} {
		err := c.conn.Check()
		if err == nil || !strings.HasPrefix(err.Error(), c.flag+": it names a device") {
			t.Errorf("%s a device: Check = %v, want one naming the flag and a device", c.flag, err)
		}
	}
}
