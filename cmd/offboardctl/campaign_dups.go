package main

import (
	"cmp"
	"fmt"
	"hash/maphash"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// Of a CSV naming one device at several rows, noteRepeats lists this many
// devices, and this many rows of each.
const (
	repeatsListed    = 5
	repeatRowsListed = 5
)

// repeat is a device the CSV names at more than one row: rows[start:]
// of the CSV's rows sorted by device, size of them.
type repeat struct{ start, size int }

// noteRepeats notes, for the warning printed before the rows are
// published (r.repeats), the rows that name a device an earlier row
// names (by deviceOf: as the worker takes it). They are
// published all the same, as the contract has every valid row published:
// each is answered on its own, the later ones already_pending with the
// earlier row's action while it is under way, which an operator counting
// devices by rows does not expect. A row that is not a valid request is
// not published and repeats nothing: a spreadsheet's lookup that found
// no id (#N/A) at many rows was told as one device at all of them, every
// row published. It costs 4 bytes a row while it runs, and one more
// when a device repeats.
func (r *campaignRun) noteRepeats() error {
	none := maphash.String(r.seed, deviceOf("", ""))
	rows := make([]int32, 0, r.total)
	for n := 1; n <= r.total; n++ {
		if r.devices[n] != none {
			rows = append(rows, int32(n))
		}
	}
	slices.SortFunc(rows, func(a, b int32) int {
		return cmp.Or(cmp.Compare(r.devices[a], r.devices[b]), cmp.Compare(a, b))
	})
	reps, extra := r.repeatedDevices(rows)
	if extra == 0 {
		return nil
	}
	// Only the rows of a repeated device are checked, and only when
	// there are some: a CSV naming each device once is not read again.
	rows, err := r.validRows(rows, reps)
	if err != nil {
		return err
	}
	if reps, extra = r.repeatedDevices(rows); extra == 0 {
		return nil
	}
	slices.SortFunc(reps, func(a, b repeat) int { return cmp.Compare(rows[a.start], rows[b.start]) })
	listed := reps[:min(len(reps), repeatsListed)]
	names, err := r.deviceNames(listed, rows)
	if err != nil {
		return err
	}
	var b strings.Builder
	rowsName := fmt.Sprintf("%d rows name", extra)
	if extra == 1 {
		rowsName = "1 row names"
	}
	fmt.Fprintf(&b, "warning: %s: %s a device an earlier row names; every row is published, and each answered on its own: ",
		r.f.csv, rowsName)
	for i, rep := range listed {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(names[int(rows[rep.start])] + " at rows " + rowList(rows[rep.start:rep.start+rep.size]))
	}
	if more := len(reps) - len(listed); more > 0 {
		fmt.Fprintf(&b, "; and %d more devices", more)
	}
	r.repeats = b.String()
	return nil
}

// repeatedDevices groups rows, sorted by device, into the devices they
// name more than once; extra is the number of rows after each device's
// first.
func (r *campaignRun) repeatedDevices(rows []int32) (reps []repeat, extra int) {
	for i := 0; i < len(rows); {
		j := i + 1
		for j < len(rows) && r.devices[rows[j]] == r.devices[rows[i]] {
			j++
		}
		if j-i > 1 {
			reps, extra = append(reps, repeat{i, j - i}), extra+j-i-1
		}
		i = j
	}
	return reps, extra
}

// validRows is the rows of the repeats (reps, of rows sorted by device)
// that are valid requests, in the same order: the others are not
// published. The CSV is read again for them, and each is checked as
// publishing checks it.
func (r *campaignRun) validRows(rows []int32, reps []repeat) ([]int32, error) {
	keep := make([]bool, r.total+1) // by row: repeated, then valid too
	for _, rep := range reps {
		for _, n := range rows[rep.start : rep.start+rep.size] {
			keep[n] = true
		}
	}
	err := r.eachRow(func(row campaign.Row) (bool, error) {
		if row.N < len(keep) && keep[row.N] {
			_, _, err := r.set.Request(row)
			keep[row.N] = err == nil
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(rows, func(n int32) bool { return !keep[n] }), nil
}

// rowList is "1, 3 and 8", or "1, 2, 15, 16, 29 and 7 more".
func rowList(rows []int32) string {
	shown := rows[:min(len(rows), repeatRowsListed)]
	s := make([]string, len(shown))
	for i, n := range shown {
		s[i] = strconv.Itoa(int(n))
	}
	if more := len(rows) - len(shown); more > 0 {
		return strings.Join(s, ", ") + " and " + strconv.Itoa(more) + " more"
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// deviceNames reads the CSV again up to the last of the repeats' first
// rows, for the device each names (deviceOf, its value quoted), by row.
func (r *campaignRun) deviceNames(reps []repeat, rows []int32) (map[int]string, error) {
	names := map[int]string{}
	for _, rep := range reps {
		names[int(rows[rep.start])] = ""
	}
	last := slices.Max(slices.Collect(maps.Keys(names)))
	found := false
	err := r.eachRow(func(row campaign.Row) (bool, error) {
		if _, ok := names[row.N]; ok {
			// Quoted: a CSV's cell may hold a terminal's control sequence.
			kind, value, _ := strings.Cut(deviceOf(row.MachineID, row.ComputerDNSName), " ")
			names[row.N] = kind + " " + offboard.Quote(value)
		}
		found = row.N == last
		return !found, nil
	})
	switch {
	case err != nil:
		return nil, err
	case !found:
		return nil, fmt.Errorf("row %d: %w", last, io.ErrUnexpectedEOF)
	}
	return names, nil
}
