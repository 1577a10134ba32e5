package deploy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

// The kinds of sample a query may read, as CheckTypes takes them: the
// samples of a counter, and a histogram's _bucket, _count and _sum, only
// go up (but for a restart); a gauge's go up and down.
const (
	Counter = "counter"
	Gauge   = "gauge"
)

// counterFunctions read a counter: on a gauge, each fall is taken for a
// restart and the result is wrong without a word. gaugeFunctions read a
// gauge: on a counter, each restart is taken for a fall.
var (
	counterFunctions = []string{"rate", "irate", "increase", "resets"}
	gaugeFunctions   = []string{"delta", "idelta", "deriv", "predict_linear", "holt_winters", "double_exponential_smoothing"}
)

// CheckTypes returns, for every query, each function it applies to
// samples of the wrong kind (kinds: of each sample name, Counter or
// Gauge; a name it lacks, such as a recording rule's, is not checked),
// and each histogram_quantile over something that is not a histogram's
// _bucket.
func CheckTypes(qs []Query, kinds map[string]string) ([]string, error) {
	var problems []string
	for _, q := range qs {
		e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVariables.Replace(q.Expr))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", q.Where, err)
		}
		parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
			call, ok := n.(*parser.Call)
			if !ok {
				return nil
			}
			name := call.Func.Name
			var want string
			switch {
			case slices.Contains(counterFunctions, name):
				want = Counter
			case slices.Contains(gaugeFunctions, name):
				want = Gauge
			case name == "histogram_quantile":
				if !readsBuckets(call.Args[1], kinds) {
					problems = append(problems, fmt.Sprintf("%s: histogram_quantile over %s, which reads no histogram's _bucket", q.Where, call.Args[1]))
				}
				return nil
			default:
				return nil
			}
			for _, metric := range selected(call) {
				if kind, known := kinds[metric]; known && kind != want {
					problems = append(problems, fmt.Sprintf("%s: %s(%s), which is a %s: %s reads a %s", q.Where, name, metric, kind, name, want))
				}
			}
			return nil
		})
	}
	return problems, nil
}

// selected are the metric names under e.
func selected(e parser.Node) []string {
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" && !slices.Contains(names, vs.Name) {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

// readsBuckets says whether e reads a histogram's _bucket samples, or a
// name kinds does not know (a recording rule's, which may).
func readsBuckets(e parser.Expr, kinds map[string]string) bool {
	for _, metric := range selected(e) {
		if _, known := kinds[metric]; !known || strings.HasSuffix(metric, "_bucket") {
			return true
		}
	}
	return false
}
