package mdesim

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Inventory makes n devices with a spread a real tenant shows: lastSeen
// from minutes to 400 days before now (a quarter within the last week),
// mostly Windows clients, some servers, Linux and macOS, health that
// follows lastSeen, device groups and a few tags. The same seed gives the
// same devices.
func Inventory(n int, seed uint64, now time.Time) []Machine {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := make([]Machine, n)
	for i := range out {
		out[i] = inventoryMachine(rng, i, now)
	}
	return out
}

var (
	inventoryOS = []struct {
		platform, prefix string
		weight           int
	}{
		{"Windows11", "pc", 45}, {"Windows10", "pc", 25}, {"WindowsServer2019", "srv", 10},
		{"WindowsServer2022", "srv", 8}, {"Linux", "lnx", 7}, {"macOS", "mac", 5},
	}
	inventoryGroups = []struct {
		name string
		id   int
	}{{"", 0}, {"Workstations", 11}, {"Servers", 12}, {"Tier 0 servers", 13}, {"Lab", 14}}
	inventoryTags = []string{"DoNotOffboard", "VIP", "Kiosk", "Lab"}
)

func inventoryMachine(rng *rand.Rand, i int, now time.Time) Machine {
	pick := rng.IntN(100)
	osi := 0
	for acc := 0; osi < len(inventoryOS)-1; osi++ {
		if acc += inventoryOS[osi].weight; pick < acc {
			break
		}
	}
	os := inventoryOS[osi]
	ago := time.Duration(rng.Int64N(int64(7 * 24 * time.Hour)))
	if rng.IntN(4) != 0 {
		ago = time.Duration(rng.Int64N(int64(400 * 24 * time.Hour)))
	}
	health := "Active"
	switch {
	case ago > 7*24*time.Hour && rng.IntN(10) == 0:
		health = "NoSensorData"
	case ago > 7*24*time.Hour:
		health = "Inactive"
	case rng.IntN(20) == 0:
		health = "ImpairedCommunication"
	}
	group := inventoryGroups[rng.IntN(len(inventoryGroups)-1)+1]
	if os.prefix == "srv" && rng.IntN(5) == 0 {
		group = inventoryGroups[3] // Tier 0 servers
	} else if rng.IntN(10) == 0 {
		group = inventoryGroups[0]
	}
	var tags []string
	if rng.IntN(25) == 0 {
		tags = append(tags, inventoryTags[rng.IntN(len(inventoryTags))])
	}
	lastSeen := now.Add(-ago).UTC()
	return Machine{
		ID:              fmt.Sprintf("%08x%032x", rng.Uint32(), i+1),
		ComputerDNSName: fmt.Sprintf("%s-%06d.contoso.local", os.prefix, i+1),
		OSPlatform:      os.platform, HealthStatus: health, LastSeen: lastSeen,
		FirstSeen:     lastSeen.Add(-time.Duration(rng.Int64N(int64(700 * 24 * time.Hour)))),
		MachineTags:   tags,
		RbacGroupName: group.name, RbacGroupID: group.id,
	}
}
