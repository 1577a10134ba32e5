// Command gen writes the Grafana dashboard that package grafana builds:
//
//	go run ./deploy/grafana/gen -o deploy/grafana/mde-offboard.json
//
// (make dashboard). Without -o it writes to the standard output.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/contoso-secops/mde-offboard/deploy/grafana"
)

func main() {
	out := flag.String("o", "", "the file to write (default: the standard output)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "gen: unexpected argument %q (see -h)\n", flag.Arg(0))
		os.Exit(2)
	}
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	data, err := grafana.JSON()
	if err != nil {
		return err
	}
	if out == "" {
		_, err = os.Stdout.Write(data)
		return err
	}
	return os.WriteFile(out, data, 0o644) //nolint:gosec // a file of the repository, read by everyone
}
