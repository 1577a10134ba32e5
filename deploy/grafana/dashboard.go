// Package grafana builds the Grafana dashboard of the worker,
// mde-offboard.json, with the Grafana foundation SDK. Change the dashboard
// here and run `make dashboard`; a test fails while the file differs.
package grafana

//go:generate go run ./gen -o mde-offboard.json

import (
	"bytes"
	"encoding/json"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// File is the dashboard's file, relative to this package's directory.
const File = "mde-offboard.json"

// The grid is 24 columns wide; a panel is 8 rows high but for the builds table.
const (
	full    = 24
	half    = 12
	third   = 8
	quarter = 6
	high    = 8
)

// datasource is the panels' data source: the one picked in the variable.
var datasource = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

// A row and the panels under it. The rows stay expanded, so the panels
// follow the row on the dashboard instead of nesting in it, and the SDK
// lays them out left to right, top to bottom.
type row struct {
	id     uint32
	title  string
	panels []cog.Builder[dashboard.Panel]
}

// Dashboard builds the dashboard.
//
// The SDK marks its dashboard package deprecated for dashboardv2, the
// schema of Grafana 12's new dashboard API; the file is a classic
// dashboard, which every Grafana imports.
//
//nolint:staticcheck // SA1019: see above
func Dashboard() (dashboard.Dashboard, error) {
	b := dashboard.NewDashboardBuilder("MDE offboarding").
		Uid("mde-offboard").
		Tags([]string{"mde-offboard"}).
		Description("The mde-offboard worker: what waits, how fast it drains, what the Defender API answers, and whether the worker is healthy. README, Dashboard, says which panel answers which question.").
		Timezone("utc").
		Version(1).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Refresh("1m").
		Time("now-6h", "now").
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").
			Label("Prometheus").
			Type("prometheus").
			Hide(dashboard.VariableHideDontHide)).
		WithVariable(tenantVariable())
	for _, r := range []row{waiting(), quota(), results(), controls(), health()} {
		b.WithRow(dashboard.NewRowBuilder(r.title).Id(r.id))
		for _, p := range r.panels {
			b.WithPanel(p)
		}
	}
	return b.Build()
}

// tenantVariable lists the tenants that have a backlog series; all by default.
func tenantVariable() *dashboard.QueryVariableBuilder {
	const query = "label_values(mde_offboard_backlog_requests, tenant)"
	all := "All"
	allValue := "$__all"
	return dashboard.NewQueryVariableBuilder("tenant").
		Label("Tenant").
		Datasource(datasource).
		Query(dashboard.StringOrMap{Map: map[string]any{"query": query, "refId": "tenant"}}).
		Definition(query).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Multi(true).
		IncludeAll(true).
		AllValue(".*").
		Current(dashboard.VariableOption{
			Text:  dashboard.StringOrArrayOfString{String: &all},
			Value: dashboard.StringOrArrayOfString{String: &allValue},
		}).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Hide(dashboard.VariableHideDontHide)
}

// JSON is the dashboard as the file holds it: indented, '<', '>' and '&'
// kept as they are, a newline at the end.
func JSON() ([]byte, error) {
	d, err := Dashboard()
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := json.Indent(&b, unescapeHTML(data), "", "  "); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// unescapeHTML turns encoding/json's \u003c, \u003e and \u0026 back into
// '<', '>' and '&' (the SDK's panels marshal themselves, so the encoder's
// SetEscapeHTML does not reach them). Other escapes are left alone.
func unescapeHTML(data []byte) []byte {
	out := make([]byte, 0, len(data))
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' || i+1 == len(data) {
			out = append(out, data[i])
			continue
		}
		if data[i+1] == 'u' && i+6 <= len(data) {
			switch string(data[i+2 : i+6]) {
			case "003c":
				out = append(out, '<')
				i += 5
				continue
			case "003e":
				out = append(out, '>')
				i += 5
				continue
			case "0026":
				out = append(out, '&')
				i += 5
				continue
			}
		}
		out = append(out, data[i], data[i+1])
		i++
	}
	return out
}

// query is one PromQL query of a panel.
func query(refID, expr, legend string) *prometheus.DataqueryBuilder {
	q := prometheus.NewDataqueryBuilder().RefId(refID).Datasource(datasource).Expr(expr)
	if legend != "" {
		q.LegendFormat(legend)
	}
	return q
}

// series is a time series panel with its legend as a table on the right.
func series(id uint32, title, description, unit string, w uint32, queries ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().
		Id(id).
		Title(title).
		Description(description).
		Datasource(datasource).
		Span(w).
		Height(high).
		Unit(unit).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementRight).
			ShowLegend(true)).
		// Grafana's defaults; the SDK would write empty strings.
		Tooltip(common.NewVizTooltipOptionsBuilder().
			Mode(common.TooltipDisplayModeSingle).
			Sort(common.SortOrderNone))
	for _, q := range queries {
		p.WithTarget(q)
	}
	return p
}

// tableOf is a table panel. Its query must be an instant one in table
// format: a range query gives the table a frame per series, and it shows
// only the first (TestTablesAreInstant).
func tableOf(id uint32, title, description string, w, h uint32, q *prometheus.DataqueryBuilder) *table.PanelBuilder {
	return table.NewPanelBuilder().
		Id(id).
		Title(title).
		Description(description).
		Datasource(datasource).
		Span(w).
		Height(h).
		Unit("short").
		ShowHeader(true).
		// No footer; the SDK would write its reducers as null.
		Footer(common.NewTableFooterOptionsBuilder().Reducer([]string{})).
		WithTarget(q)
}

func waiting() row {
	return row{id: 1, title: "Waiting requests", panels: []cog.Builder[dashboard.Panel]{
		series(2, "Backlog by priority",
			"Requests waiting in MDE_OFFBOARD_REQUESTS per tenant and priority (max across the replicas connected to NATS; one without keeps its last count). Does anything wait, and which priority?",
			"short", third,
			query("A", `tenant_priority:mde_offboard_backlog_requests:max{tenant=~"$tenant"}`, "{{tenant}} {{priority}}")),
		oldestWaiting(3, "normal", "15 minutes", 15*60),
		oldestWaiting(25, "bulk", "24 hours", 24*60*60),
	}}
}

// oldestWaiting is the age of a priority's oldest waiting request, per
// tenant, against the priority's service level (the age past which
// MdeOffboardRequestsWaitingTooLong fires), drawn as a dashed line. A
// panel per priority: a time series panel draws one set of thresholds
// for all its series, and the levels are 96 times apart. The axis reaches
// the level while the requests are younger, so the line stays in view and
// the distance to it reads at a glance.
func oldestWaiting(id uint32, priority, within string, level float64) *timeseries.PanelBuilder {
	return series(id, "Oldest waiting request: "+priority,
		"Age of the oldest "+priority+"-priority request not answered yet, per tenant (max across the replicas connected to NATS). The dashed line is the service level: a result within "+within+" (alert MdeOffboardRequestsWaitingTooLong, quiet while the priority is paused or the tenant held by its budget).",
		"s", third,
		query("A", `tenant_priority:mde_offboard_oldest_waiting_seconds:max{tenant=~"$tenant", priority="`+priority+`"}`, "{{tenant}}")).
		Thresholds(dashboard.NewThresholdsConfigBuilder().
			Mode(dashboard.ThresholdsModeAbsolute).
			Steps([]dashboard.Threshold{
				{Color: "green"},
				{Color: "red", Value: cog.ToPtr(level)},
			})).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		AxisSoftMin(0).
		AxisSoftMax(level)
}

func quota() row {
	return row{id: 4, title: "Quota and the Defender API", panels: []cog.Builder[dashboard.Panel]{
		series(5, "Quota windows used",
			"Share of each sliding window in use against its configured limit (100/1m, 1500/1h by default). At 100% requests wait for quota, by design.",
			"percentunit", half,
			query("A", `tenant_api_window:mde_offboard_quota_used:ratio{tenant=~"$tenant"}`, "{{tenant}} {{api}} {{window}}")).
			Min(0).
			Max(1),
		series(6, "API calls by status",
			"Defender API calls per second by HTTP status (error: no answer). 5xx and error are retried; 429 pauses the tenant.",
			"reqps", half,
			query("A", `sum by (api, status) (tenant_api_status:mde_offboard_api_calls:rate5m{tenant=~"$tenant"})`, "{{api}} {{status}}")),
		series(7, "429 answers (last hour)",
			"Throttled calls per tenant and API in the last hour. Any 429 means something else uses the same application and tenant, or the limits are set too high (alert MdeOffboardThrottled).",
			"short", half,
			query("A", `tenant_api:mde_offboard_throttled:increase1h{tenant=~"$tenant"} > 0`, "{{tenant}} {{api}}")).
			// > 0 keeps the tenants at zero off the panel; with none above
			// it, it shows 0 rather than "No data", which reads as a broken
			// query.
			NoValue("0"),
		series(27, "429 pause left",
			"Time left of the pause a 429's Retry-After asked for, per tenant (the latest end any replica knows of): no call of the tenant goes out until it ends, and its requests wait (alert MdeOffboardThrottled stays on meanwhile, MdeOffboardBacklogNotDraining quiet).",
			"s", half,
			query("A", `max by (tenant) (mde_offboard_throttled_until_timestamp_seconds{tenant=~"$tenant"}) - time() > 0`, "{{tenant}}")).
			// > 0 leaves out the tenants not paused; with none, the usual
			// case, no time is left: 0.
			NoValue("0"),
		series(26, "Calls without a token (last hour)",
			"API calls not sent because no token could be had, per tenant and reason, in the last hour, whatever made the call (action tracking's looks included, which fail no request). refused: the login host refused the credentials (alert MdeOffboardCredentialsRejected); no_answer, throttled, error_answer: the login host; credential: the secret or certificate file (alert MdeOffboardTokenUnavailable).",
			"short", half,
			query("A", `tenant_reason:mde_offboard_token_failures:increase1h{tenant=~"$tenant"} > 0`, "{{tenant}} {{reason}}")).
			NoValue("0"),
		series(8, "API latency (all tenants)",
			"50th and 95th percentile of the Defender API's answer time, by API, all tenants.",
			"s", half,
			query("A", `histogram_quantile(0.95, sum by (le, api) (rate(mde_offboard_api_call_duration_seconds_bucket[$__rate_interval])))`, "p95 {{api}}"),
			query("B", `histogram_quantile(0.5, sum by (le, api) (rate(mde_offboard_api_call_duration_seconds_bucket[$__rate_interval])))`, "p50 {{api}}")),
		series(31, "Calls repeated (all tenants)",
			"API calls made again per second, by API and reason (network, timeout, server_error, throttled, token, unauthorized, forbidden, not_found), all tenants. A steady rate of one reason points at the API, the network or the application's roles.",
			"reqps", half,
			query("A", "sum by (api, reason) (rate(mde_offboard_api_retries_total[$__rate_interval])) > 0", "{{api}} {{reason}}")).
			NoValue("0"),
		series(32, "Wait for quota (all tenants)",
			"95th and 50th percentile of the time requests waited for a place in the quota before their call, by API, all tenants. Minutes mean the windows are full: by design while a backlog drains.",
			"s", half,
			query("A", `histogram_quantile(0.95, sum by (le, api) (rate(mde_offboard_limiter_wait_seconds_bucket[$__rate_interval])))`, "p95 {{api}}"),
			query("B", `histogram_quantile(0.5, sum by (le, api) (rate(mde_offboard_limiter_wait_seconds_bucket[$__rate_interval])))`, "p50 {{api}}")),
	}}
}

func results() row {
	return row{id: 9, title: "Results", panels: []cog.Builder[dashboard.Panel]{
		series(10, "Results by outcome",
			"Results published per second by outcome and failure code. Failed results are also the dead letters (offboardctl dead ls).",
			"reqps", half,
			query("A", `sum by (outcome, code) (tenant_outcome_code:mde_offboard_results:rate5m{tenant=~"$tenant"})`, "{{outcome}} {{code}}")),
		series(11, "Request to result",
			"Time from a request's publication to its result, 50th and 95th percentile by priority, all tenants.",
			"s", half,
			query("A", "priority:mde_offboard_request_to_result_seconds:p95_5m", "p95 {{priority}}"),
			query("B", "priority:mde_offboard_request_to_result_seconds:p50_5m", "p50 {{priority}}")),
		series(12, "Guard refusals (last hour)",
			"Devices the tenant's guards refused (blocked_by_policy) in the last hour, by rule. A refusal is the guard doing its job; many of them point at a publisher sending the wrong devices.",
			"short", half,
			query("A", `tenant_rule:mde_offboard_blocked:increase1h{tenant=~"$tenant"} > 0`, "{{tenant}} {{rule}}")).
			NoValue("0"),
		series(13, "In flight",
			"Requests taken from the stream and not yet answered, per tenant, summed over replicas.",
			"short", half,
			query("A", `sum by (tenant) (mde_offboard_in_flight_requests{tenant=~"$tenant"})`, "{{tenant}}")),
	}}
}

// withNATS leaves out the series of replicas without NATS: such a replica
// sees no resume and no change of budget, and keeps the pause, hold and
// budget it saw last.
const withNATS = "unless on (job, instance) (mde_offboard_nats_connected == 0)"

func controls() row {
	return row{id: 14, title: "Controls: paused, held, budget", panels: []cog.Builder[dashboard.Panel]{
		tableOf(15, "Paused",
			"1 while an operator has paused the tenant's priority (offboardctl pause), as the replicas connected to NATS see it. Its requests wait; the waiting alerts stay quiet.",
			third, high,
			query("A", `max by (tenant, priority) (mde_offboard_tenant_paused{tenant=~"$tenant"} `+withNATS+`) > 0`, "{{tenant}} {{priority}}").
				Format(prometheus.PromQueryFormatTable).
				Instant()).
			// > 0 leaves out what is not paused; with nothing paused, the
			// usual case, the table says so rather than "No data".
			NoValue("none paused"),
		series(16, "Held requests",
			"Requests waiting on purpose, by reason: pause (an operator paused the tenant) or budget (its budget is spent; a higher budget, offboardctl budget, lets them go).",
			"short", third,
			query("A", `max by (tenant, reason) (mde_offboard_held_requests{tenant=~"$tenant"} `+withNATS+`) > 0`, "{{tenant}} {{reason}}")).
			NoValue("0"),
		series(17, "Budget left",
			"Actions the tenant's budget still allows in its window (tenants with a budget).",
			"short", third,
			// A tenant without a budget reports NaN: >= 0 leaves it out.
			query("A", `min by (tenant) (mde_offboard_budget_remaining{tenant=~"$tenant"} `+withNATS+`) >= 0`, "{{tenant}}")).
			// With no tenant budgeted there is nothing to draw: said so,
			// not as 0, which would read as a spent budget.
			NoValue("no budget set"),
	}}
}

func health() row {
	return row{id: 18, title: "Health", panels: append([]cog.Builder[dashboard.Panel]{
		stat.NewPanelBuilder().
			Id(19).
			Title("NATS connected").
			Description("1 while each replica's NATS connection is up. 0: that replica takes no request (alert MdeOffboardNATSDisconnected).").
			Datasource(datasource).
			Span(quarter).
			Height(high).
			Unit("short").
			Mappings([]dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{
				Type: dashboard.MappingTypeValueToText,
				Options: map[string]dashboard.ValueMappingResult{
					"0": {Text: cog.ToPtr("down"), Color: cog.ToPtr("red")},
					"1": {Text: cog.ToPtr("up"), Color: cog.ToPtr("green")},
				},
			}}}).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
			ColorMode(common.BigValueColorModeBackground).
			Orientation(common.VizOrientationAuto).
			// Instant: a range query would also show, with their last
			// value, the replicas of the time range gone since (a rollout,
			// a crash).
			WithTarget(query("A", "mde_offboard_nats_connected", "{{instance}}").Instant()),
		series(20, "Quota and budget journals",
			"Caught up (1) per replica and journal; write failures, unreadable entries and conflicts per second. Without the quota journal no call is made; without the budget journal no offboard call of a tenant with a budget, whose requests then show as held by the budget (alert MdeOffboardQuotaJournalUnavailable).",
			"short", quarter,
			query("A", "mde_offboard_quota_journal_caught_up", "quota caught up {{instance}}"),
			query("B", "rate(mde_offboard_quota_journal_write_failures_total[$__rate_interval])", "quota write failures {{instance}}"),
			query("C", "rate(mde_offboard_quota_journal_conflicts_total[$__rate_interval])", "quota conflicts {{instance}}"),
			query("D", "rate(mde_offboard_quota_journal_unreadable_entries_total[$__rate_interval])", "quota unreadable {{instance}}"),
			query("E", "mde_offboard_budget_journal_caught_up", "budget caught up {{instance}}"),
			query("F", "rate(mde_offboard_budget_journal_write_failures_total[$__rate_interval])", "budget write failures {{instance}}"),
			query("G", "rate(mde_offboard_budget_journal_conflicts_total[$__rate_interval])", "budget conflicts {{instance}}"),
			query("H", "rate(mde_offboard_budget_journal_unreadable_entries_total[$__rate_interval])", "budget unreadable {{instance}}")),
		series(21, "Clock offset",
			"Each replica's clock minus the NATS server's. Beyond half of --quota-margin (250ms by default) a replica makes no call (alert MdeOffboardClockOffset).",
			"s", quarter,
			query("A", "mde_offboard_clock_offset_seconds", "{{instance}}")),
		series(22, "Action tracking",
			"Machine Actions followed (left axis) and how far the tracking is behind (right axis, time), per tenant, as the replicas connected to NATS see it (alert MdeOffboardTrackingBehind).",
			"short", quarter,
			// A replica without NATS gets no quota for its looks and reads
			// no ledger: its lag grows and its count stays while the
			// others follow the actions.
			query("A", `max by (tenant) (mde_offboard_tracked_actions{tenant=~"$tenant"} `+withNATS+`)`, "tracked {{tenant}}"),
			query("B", `max by (tenant) (mde_offboard_tracking_lag_seconds{tenant=~"$tenant"} `+withNATS+`)`, "lag {{tenant}}")).
			// The lag is in seconds, beside a count: its own unit and axis.
			OverrideByQuery("B", []dashboard.DynamicConfigValue{
				{Id: "unit", Value: "s"},
				{Id: "custom.axisPlacement", Value: "right"},
			}).
			// Only tenants with tracking.enabled have these series.
			NoValue("tracking off"),
		tableOf(23, "Builds running", "Version and revision of each replica.", half, 5,
			query("A", "mde_offboard_build_info", "").
				Format(prometheus.PromQueryFormatTable).
				Instant()),
		tableOf(24, "Certificates: time left",
			"How long until the certificate each tenant's application signs with stops being valid (tenants with a certificate; the soonest any replica uses). Then every request of the tenant fails unauthorized (alert MdeOffboardCertificateExpiresSoon, 14 days before).",
			half, 5,
			query("A", `min by (tenant) (mde_offboard_certificate_expiry_timestamp_seconds{tenant=~"$tenant"}) - time()`, "{{tenant}}").
				Format(prometheus.PromQueryFormatTable).
				Instant()).
			Unit("s").
			// Only tenants that sign in with a certificate have the series.
			NoValue("no certificate in use"),
	}, replicas()...)}
}

// replicas are the health panels of the replicas together: the tenants'
// spread, their guards, their NATS subscriptions.
func replicas() []cog.Builder[dashboard.Panel] {
	return []cog.Builder[dashboard.Panel]{
		series(28, "Tenants per replica",
			"Tenants whose requests each replica takes. Each tenant is worked by one replica at a time; a replica that stops hands its tenants over at once, one that dies after about 16 s. A replica at 0 serves none: it starts (until it has read the quota journal), its clock is off, or its file's tenants are all held.",
			"short", third,
			query("A", "sum by (instance) (mde_offboard_tenant_assigned)", "{{instance}}")),
		series(29, "Guards that differ",
			"Other live replicas serving the tenant with other guards (protect lists, requireInactiveFor, budget) than this replica's tenants file: one tenant's requests judged by different guards depending on the replica (alert MdeOffboardGuardsDisagree; offboardctl guards shows what differs).",
			"short", third,
			query("A", `max by (tenant) (mde_offboard_guards_disagree{tenant=~"$tenant"}) > 0`, "{{tenant}}")).
			// > 0 keeps the agreeing tenants off the panel.
			NoValue("0"),
		series(30, "NATS slow consumers",
			"Times a replica's NATS subscriptions fell behind and the client dropped messages, per replica. The worker notices a dropped wake-up and looks for requests itself; many in a row point at a replica short of CPU.",
			"short", third,
			query("A", "increase(mde_offboard_nats_slow_consumers_total[$__rate_interval]) > 0", "{{instance}}")).
			NoValue("0"),
	}
}
