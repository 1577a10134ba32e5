package main

import (
	"bytes"
	"strings"
	"testing"
)

// A flag's argument that does not parse is not shown: it may be a
// password or a key. The worker's single-dash form (-nats-url=URL) is no
// flag here, and a value given to the wrong flag is no duration; each is
// a usage error naming the flag, not what followed it.
func TestFlagErrorsShowNoValue(t *testing.T) {
	t.Parallel()
	const url = "nats://alice:S3CR3T@127.0.0.1:1"
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-nats-url=" + url, "status"}, "--nats-url"},
		{[]string{"status", "-nats-url=" + url}, "--nats-url"},
		{[]string{"-tlskey=-----BEGIN PRIVATE KEY-----S3CR3T", "status"}, "--tlskey"},
		{[]string{"-xS3CR3T", "status"}, "-x"},
		{[]string{"---nats-url=" + url, "status"}, "bad flag syntax"},
		{[]string{"--=" + url, "status"}, "bad flag syntax"},
		{[]string{"--connect-timeout", url, "status"}, "--connect-timeout"},
		{[]string{"--connect-timeout=" + url, "status"}, "--connect-timeout"},
		{[]string{"--subject-prefix", "S3CR3T x", "status"}, "--subject-prefix"},
		{[]string{"--nats-inbox-prefix", "S3CR3T x", "status"}, "--nats-inbox-prefix"},
		{[]string{"--nats-inbox-prefix", "$JS.S3CR3T", "status"}, "--nats-inbox-prefix"},
	} {
		var out, errb bytes.Buffer
		code := run(tt.args, &out, &errb)
		msg := errb.String()
		if code != exitUsage || strings.Contains(msg, "S3CR3T") || strings.Contains(msg, "alice") || !strings.Contains(msg, tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d, naming %q and not the value", tt.args, code, msg, exitUsage, tt.want)
		}
	}
}

// A connection flag that lost its value (--nats-creds "$UNSET") takes the
// next flag's name, and the NATS URL after it is left as an argument: to
// help and completion as to any other command, where it is named
// without its user and password.
func TestHelpAndCompletionShowNoPassword(t *testing.T) {
	t.Parallel()
	urlShownWithoutPassword(t, [][]string{
		{"help", "--nats-creds", "--nats-url", leakyURL},
		{"help", "status", "--nats-creds", "--nats-url", leakyURL},
		{"completion", "--nats-creds", "--nats-url", leakyURL},
	})
}

// A flag that lost its value (--code "$UNSET") takes the next flag's
// name, and the NATS URL after it is left as the TENANT argument: the
// refusal of that tenant names it without its user and password, as an
// unknown command is named.
func TestRefusedTenantShowsNoPassword(t *testing.T) {
	t.Parallel()
	urlShownWithoutPassword(t, [][]string{
		{"dead", "ls", "--code", "--nats-url", leakyURL},
		{"dead", "retry", "--code", "--nats-url", leakyURL, "--all"},
		{"pause", "--reason", "--nats-url", leakyURL},
	})
}

// leakyURL is a NATS URL with a user and password.
const leakyURL = "nats://alice:S3CR3T@127.0.0.1:1"

// urlShownWithoutPassword runs offboardctl with each of argsList, which
// hold leakyURL where it does not belong: each is refused as bad usage,
// naming the URL without its user and password.
func urlShownWithoutPassword(t *testing.T, argsList [][]string) {
	t.Helper()
	for _, args := range argsList {
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		msg := errb.String()
		if code != exitUsage || strings.Contains(msg, "S3CR3T") || strings.Contains(msg, "alice") || !strings.Contains(msg, "127.0.0.1:1") {
			t.Errorf("%q: exit %d, stderr %q; want %d, the URL without its user and password", args, code, msg, exitUsage)
		}
	}
}

// budget reads a negative budget (-5/1h) in its own flag errors; every
// other flag error of budget is told as any other command's: without the
// value, which may be a password given to the wrong flag.
func TestBudgetFlagErrorsShowNoValue(t *testing.T) {
	t.Parallel()
	const url = "nats://alice:S3CR3T@127.0.0.1:1"
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"budget", "contoso", "--clear", "--connect-timeout", url}, "--connect-timeout"},
		{[]string{"budget", "contoso", "--clear=" + url}, "--clear"},
		{[]string{"budget", "contoso", "--clear", "--unknown-tenant=" + url}, "--unknown-tenant"},
		{[]string{"budget", "contoso", "--clear", "-nats-url=" + url}, "--nats-url"},
		{[]string{"budget", "contoso", "--clear", "-xS3CR3T"}, "-x"},
		{[]string{"budget", "contoso", "--clear", "---nats-url=" + url}, "bad flag syntax"},
	} {
		var out, errb bytes.Buffer
		code := run(tt.args, &out, &errb)
		msg := errb.String()
		if code != exitUsage || strings.Contains(msg, "S3CR3T") || strings.Contains(msg, "alice") || !strings.Contains(msg, tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d, naming %q and not the value", tt.args, code, msg, exitUsage, tt.want)
		}
	}
	// The negative budget is still told as a budget.
	var out, errb bytes.Buffer
	if code := run([]string{"budget", "contoso", "-5/1h"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "budget: a budget's count") {
		t.Errorf("budget contoso -5/1h: exit %d, stderr %q; want %d, a budget's count", code, errb.String(), exitUsage)
	}
}

// A flag and its value given as one argument ("--nats-url URL", one item
// of a container's args) is a flag pflag does not know, whose name it
// quotes whole: it is named by the flag alone, with how to give its
// value, as the worker names it.
func TestFlagAndValueInOneArgumentShowNoValue(t *testing.T) {
	t.Parallel()
	const url = "nats://alice:S3CR3T@127.0.0.1:1"
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--nats-url " + url, "status"}, "--nats-url and more in the same argument"},
		{[]string{"status", "--nats-url " + url}, "--nats-url and more in the same argument"},
		{[]string{"status", "--nats-url\t" + url}, "--nats-url and more in the same argument"},
		{[]string{"budget", "contoso", "5/1h", "--nats-url " + url}, "--nats-url and more in the same argument"},
		{[]string{"status", "--no-such-flag " + url}, "--no-such-flag"},
		{[]string{"status", "--tlskey -----BEGIN PRIVATE KEY-----S3CR3T"}, "--tlskey and more in the same argument"},
	} {
		var out, errb bytes.Buffer
		code := run(tt.args, &out, &errb)
		msg := errb.String()
		if code != exitUsage || strings.Contains(msg, "S3CR3T") || strings.Contains(msg, "alice") || !strings.Contains(msg, tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d, naming %q and not the value", tt.args, code, msg, exitUsage, tt.want)
		}
	}
}
