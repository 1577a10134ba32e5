package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// examples are the commands' examples in --help, by command path: what
// an operator runs most, ready to copy. A line starting with # says what
// the next does. TestExamplesParse runs each one up to the connection.
var examples = map[string][]string{
	"offboardctl pause": {
		"# Stop starting offboard calls for contoso; its requests wait in the stream",
		`offboardctl pause contoso --reason "CHG0012345: wrong CMDB export"`,
		"# Hold the bulk campaigns only: single retirements (normal) go on",
		`offboardctl pause contoso --priority bulk --reason "campaign on hold"`,
	},
	"offboardctl resume": {
		"offboardctl resume contoso",
		`offboardctl resume contoso --priority bulk --reason "list checked"`,
	},
	"offboardctl budget": {
		"# At most 200 devices offboarded in any 24 hours",
		`offboardctl budget contoso 200/24h --reason "INC0042: slow down"`,
		"# Back to the tenants file's budget",
		"offboardctl budget contoso --clear",
	},
	"offboardctl status": {
		"offboardctl status",
		"offboardctl status contoso",
		"# Every tenant, for scripts",
		"offboardctl status --json",
	},
	"offboardctl guards": {
		"# After a rollout: exit 0 when the replicas serving contoso hold the same guards",
		"offboardctl guards contoso",
		"# Every tenant, the protect lists whole, for scripts",
		"offboardctl guards --json",
	},
	"offboardctl campaign plan": {
		"# Windows clients not seen for 90 days, as a CSV to review",
		"offboardctl campaign plan --tenant contoso --inactive-for 90d --os Windows10 --os Windows11 --out retire-2026.csv",
	},
	"offboardctl campaign run": {
		"# A dry run first (guards and lookups, no offboard), under a name of its own",
		"offboardctl campaign run --tenant contoso --csv retire-2026.csv --name retire-2026-dry --dry-run",
		"offboardctl campaign run --tenant contoso --csv retire-2026.csv",
	},
	"offboardctl campaign status": {
		"offboardctl campaign status --tenant contoso --name retire-2026",
		"offboardctl campaign status --tenant contoso --name retire-2026 --json",
	},
	"offboardctl campaign cancel": {
		`offboardctl campaign cancel --tenant contoso --name retire-2026 --reason "wrong list"`,
	},
	"offboardctl results": {
		"# Who offboarded a device, when, and its Machine Action",
		"offboardctl results contoso --machine-id 1e5bc9d7e413ddd7902c2932e418702b84d0cc07",
		"offboardctl results contoso --name laptop-123.contoso.local --since 30d",
		"offboardctl results contoso --request-id 3f0c2a1e-8d4b-4f51-9a6e-2b7c1d0e9f88 --json",
		"offboardctl results contoso --outcome failed --since 24h",
	},
	"offboardctl dead ls": {
		"offboardctl dead ls",
		"offboardctl dead ls contoso --code machine_not_found",
	},
	"offboardctl dead retry": {
		"offboardctl dead retry contoso --seq 42",
		"# Every dead letter of a code, once its cause is mended",
		"offboardctl dead retry contoso --all --code machine_not_found",
	},
}

// addExamples sets the Example of each command examples names.
func addExamples(root *cobra.Command) {
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		if lines, ok := examples[cmd.CommandPath()]; ok {
			cmd.Example = "  " + strings.Join(lines, "\n  ")
		}
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
