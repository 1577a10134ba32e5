package main

import (
	"github.com/spf13/cobra"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

func init() { commands = append(commands, newCampaignCmd) }

func newCampaignCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "campaign",
		Short: "Plan, run, follow and cancel bulk offboarding campaigns",
		Args:  noSubcommandArgs,
		RunE: func(*cobra.Command, []string) error {
			return usagef("a campaign command is required: plan, run, status or cancel")
		},
	}
	cmd.AddCommand(newCampaignPlanCmd(c), newCampaignRunCmd(c), newCampaignStatusCmd(c), newCampaignCancelCmd(c))
	return cmd
}

// checkTenant refuses a --tenant that no worker can have.
func checkTenant(tenant string) error { return checkTenantAs("--tenant", tenant) }

// checkTenantArg refuses a TENANT argument that no worker can have.
func checkTenantArg(tenant string) error { return checkTenantAs("TENANT", tenant) }

// checkTenantAs refuses a tenant name that no worker can have; what says
// where it was given. The name is quoted without user information, as
// unknownCommand names its argument: a NATS URL lands in TENANT when the
// flag before it lost its value (dead ls --code "$UNSET" --nats-url URL).
func checkTenantAs(what, tenant string) error {
	switch {
	case tenant == "":
		return usagef("%s is required", what)
	case !offboard.TenantName.MatchString(tenant):
		return usagef("tenant %s is not a tenant name ([a-z0-9][a-z0-9_-]{0,62})", offboard.Quote(queue.RedactURLs(tenant)))
	}
	return nil
}

// checkName refuses a campaign name that cannot make request ids or a
// control key (so could not be cancelled).
func checkName(name string) error {
	if name == "" {
		return usagef("--name is required")
	}
	if !campaign.ValidName(name) {
		return usagef("campaign name %s: want 1 to 120 of [a-z0-9._-], not starting or ending with '.', without '..'", offboard.Quote(queue.RedactURLs(name)))
	}
	return nil
}
