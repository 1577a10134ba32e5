package main

import "github.com/spf13/cobra"

// This file only gives `campaign plan` a parent while `campaign` has no
// other subcommand here; where a `campaign` command exists, drop this file
// and add newCampaignPlanCmd(c) to it.

func init() { commands = append(commands, newCampaignCmd) }

func newCampaignCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "campaign",
		Short: "Plan bulk offboarding campaigns",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("a campaign command is required; see %s --help", cmd.CommandPath())
		},
	}
	cmd.AddCommand(newCampaignPlanCmd(c))
	return cmd
}
