package mdesim

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Fixtures are tenants and their devices written in a file (YAML, or JSON,
// which YAML reads too), for cmd/mdesim --fixtures and for tests:
//
//	tenants:
//	  - tenantId: 11111111-2222-3333-4444-555555555555
//	    clientId: 66666666-7777-8888-9999-000000000000
//	    clientSecret: s3cret
//	    machines:
//	      - computerDnsName: dc01.contoso.local
//	        machineTags: [DoNotOffboard]
//	        rbacGroupName: Tier 0 servers
//	        rbacGroupId: 7
//	        lastSeenAgo: 100d
//	    generate: 5000   # and 5000 more devices, spread as in a real tenant
type Fixtures struct {
	Tenants []FixtureTenant `yaml:"tenants"`
}

// FixtureTenant is a tenant of a fixtures file. Empty fields are left for
// the caller to fill (cmd/mdesim gives them its flags' values).
type FixtureTenant struct {
	TenantID     string           `yaml:"tenantId"`
	ClientID     string           `yaml:"clientId"`
	ClientSecret string           `yaml:"clientSecret"`
	Roles        []string         `yaml:"roles"` // nil: RoleOffboard and RoleReadAll
	Machines     []FixtureMachine `yaml:"machines"`
	// Generate adds that many devices made by Inventory (lastSeen, OS,
	// health, groups and tags spread as in a real tenant), with seed
	// GenerateSeed.
	Generate     int    `yaml:"generate"`
	GenerateSeed uint64 `yaml:"generateSeed"`
}

// FixtureMachine is a device of a fixtures file; empty fields get
// Machine's defaults.
type FixtureMachine struct {
	ID              string `yaml:"id"`
	ComputerDNSName string `yaml:"computerDnsName"`
	OSPlatform      string `yaml:"osPlatform"`
	Version         string `yaml:"version"`
	// HealthStatus is one of the service's health states (Active,
	// Inactive, NoSensorData, ...) in any case, served as the service
	// spells it.
	HealthStatus string    `yaml:"healthStatus"`
	LastSeen     time.Time `yaml:"lastSeen"`
	// LastSeenAgo sets lastSeen relative to when the fixtures are added:
	// a Go duration or a number of days ("90d"). Exclusive with LastSeen.
	LastSeenAgo   string   `yaml:"lastSeenAgo"`
	MachineTags   []string `yaml:"machineTags"`
	RbacGroupName string   `yaml:"rbacGroupName"`
	RbacGroupID   int      `yaml:"rbacGroupId"`
}

// MaxDevices bounds the devices made for one tenant (Fixtures' Generate,
// mdesim's --machines): they are all made in memory before the first
// answer, about 1 KiB each, and the largest real tenants hold some
// hundreds of thousands.
const MaxDevices = 1_000_000

var fixtureMachineID = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)

// ParseFixtures reads a fixtures file. Unknown keys are errors.
func ParseFixtures(data []byte) (*Fixtures, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f Fixtures
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("fixtures: %w", err)
	}
	var errs []error
	for i, t := range f.Tenants {
		if t.TenantID == "" {
			errs = append(errs, fmt.Errorf("fixtures: tenant %d: no tenantId", i+1))
		}
		if t.Generate < 0 || t.Generate > MaxDevices {
			errs = append(errs, fmt.Errorf("fixtures: tenant %d: generate must be between 0 and %d", i+1, MaxDevices))
		}
		for k, m := range t.Machines {
			where := fmt.Sprintf("fixtures: tenant %d, machine %d", i+1, k+1)
			if m.ID != "" && !fixtureMachineID.MatchString(m.ID) {
				errs = append(errs, fmt.Errorf("%s: id %q is not 40 hexadecimal characters", where, m.ID))
			}
			if m.HealthStatus != "" {
				// Spelled as the service spells it: its filter binds a
				// healthStatus to that spelling, and a device served
				// "inactive" was listed by no filter on its health.
				members := machineSchema.enums["healthStatus"]
				if j := slices.IndexFunc(members, func(h string) bool { return strings.EqualFold(h, m.HealthStatus) }); j >= 0 {
					f.Tenants[i].Machines[k].HealthStatus = members[j]
				} else {
					errs = append(errs, fmt.Errorf("%s: healthStatus %q is none of %s", where, m.HealthStatus, strings.Join(members, ", ")))
				}
			}
			if m.LastSeenAgo != "" {
				if !m.LastSeen.IsZero() {
					errs = append(errs, fmt.Errorf("%s: lastSeen and lastSeenAgo are exclusive", where))
				}
				if _, err := parseAgo(m.LastSeenAgo); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", where, err))
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &f, nil
}

// AddFixtures registers the fixtures' tenants and their machines.
func (s *Server) AddFixtures(f *Fixtures) {
	now := s.clock.Now()
	for _, t := range f.Tenants {
		s.AddTenant(Tenant{TenantID: t.TenantID, ClientID: t.ClientID, ClientSecret: t.ClientSecret, Roles: t.Roles})
		for _, m := range t.Machines {
			lastSeen := m.LastSeen
			if ago, err := parseAgo(m.LastSeenAgo); err == nil && m.LastSeenAgo != "" {
				lastSeen = now.Add(-ago)
			}
			s.AddMachine(t.TenantID, Machine{
				ID: strings.ToLower(m.ID), ComputerDNSName: m.ComputerDNSName, OSPlatform: m.OSPlatform,
				Version: m.Version, HealthStatus: m.HealthStatus, LastSeen: lastSeen, MachineTags: m.MachineTags,
				RbacGroupName: m.RbacGroupName, RbacGroupID: m.RbacGroupID,
			})
		}
		for _, m := range Inventory(t.Generate, t.GenerateSeed, now) {
			s.AddMachine(t.TenantID, m)
		}
	}
}

// parseAgo reads a Go duration or a number of days ("90d").
func parseAgo(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		// No more days than a Duration holds: more would wrap around to
		// a device seen minutes ago, or in the future.
		if n, err := strconv.Atoi(days); err == nil && n >= 0 && int64(n) <= math.MaxInt64/int64(24*time.Hour) {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("lastSeenAgo %q is not a duration such as 36h or 90d", s)
	}
	return d, nil
}
