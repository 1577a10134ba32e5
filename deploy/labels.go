package deploy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

// ScrapeLabels are the labels Prometheus adds to every series it scrapes,
// and that up has.
var ScrapeLabels = []string{"job", "instance"}

// labelSet is the labels an expression's series may carry; nil when they
// are not known (a metric no one knows, a selector without a name), which
// lets every label through.
type labelSet map[string]bool

func setOf(names ...string) labelSet {
	s := labelSet{}
	for _, n := range names {
		s[n] = true
	}
	return s
}

func (s labelSet) has(name string) bool { return s == nil || s[name] }

func (s labelSet) String() string {
	return "[" + strings.Join(slices.Sorted(maps.Keys(s)), " ") + "]"
}

// with is s and names, without modifying s.
func (s labelSet) with(names ...string) labelSet {
	if s == nil {
		return nil
	}
	out := maps.Clone(s)
	for _, n := range names {
		out[n] = true
	}
	return out
}

// without is s but names, without modifying s.
func (s labelSet) without(names ...string) labelSet {
	if s == nil {
		return nil
	}
	out := maps.Clone(s)
	for _, n := range names {
		delete(out, n)
	}
	return out
}

// labelCheck follows the labels through one expression and notes every
// label it uses that the series it uses it with lack.
type labelCheck struct {
	metrics  map[string]labelSet
	where    string
	problems []string
}

func (c *labelCheck) missing(s labelSet, label, how string, e parser.Expr) {
	if !s.has(label) {
		c.problems = append(c.problems, fmt.Sprintf("%s: %s uses label %q, which %s lacks (it has %s)",
			c.where, how, label, describe(e), s))
	}
}

// describe names the metrics under e, or e itself when it has none.
func describe(e parser.Expr) string {
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" && !slices.Contains(names, vs.Name) {
			names = append(names, vs.Name)
		}
		return nil
	})
	if len(names) == 0 {
		return e.String()
	}
	return strings.Join(names, ", ")
}

// labels returns the labels of e's series.
func (c *labelCheck) labels(e parser.Expr) labelSet {
	switch e := e.(type) {
	case *parser.VectorSelector:
		return c.selector(e)
	case *parser.MatrixSelector:
		return c.labels(e.VectorSelector)
	case *parser.SubqueryExpr:
		return c.labels(e.Expr)
	case *parser.ParenExpr:
		return c.labels(e.Expr)
	case *parser.StepInvariantExpr:
		return c.labels(e.Expr)
	case *parser.UnaryExpr:
		return c.labels(e.Expr)
	case *parser.AggregateExpr:
		return c.aggregate(e)
	case *parser.Call:
		return c.call(e)
	case *parser.BinaryExpr:
		return c.binary(e)
	}
	return labelSet{} // numbers and strings
}

func (c *labelCheck) selector(vs *parser.VectorSelector) labelSet {
	s, ok := c.metrics[vs.Name]
	if !ok {
		return nil
	}
	for _, m := range vs.LabelMatchers {
		if m.Name != "__name__" {
			c.missing(s, m.Name, "the matcher "+m.String(), vs)
		}
	}
	return s
}

func (c *labelCheck) aggregate(a *parser.AggregateExpr) labelSet {
	if a.Param != nil {
		c.labels(a.Param)
	}
	in := c.labels(a.Expr)
	how := a.Op.String() + " by"
	if a.Without {
		how = a.Op.String() + " without"
	}
	for _, l := range a.Grouping {
		c.missing(in, l, how+" ("+l+")", a.Expr)
	}
	switch {
	case a.Op == parser.TOPK || a.Op == parser.BOTTOMK || a.Op == parser.LIMITK || a.Op == parser.LIMIT_RATIO:
		return in // the series themselves
	case a.Without:
		return in.without(a.Grouping...)
	case a.Op == parser.COUNT_VALUES:
		if sl, ok := a.Param.(*parser.StringLiteral); ok {
			return setOf(a.Grouping...).with(sl.Val)
		}
	}
	return setOf(a.Grouping...)
}

// stringArg is argument i of a call when it is a string.
func stringArg(call *parser.Call, i int) string {
	if i < len(call.Args) {
		if sl, ok := unwrap(call.Args[i]).(*parser.StringLiteral); ok {
			return sl.Val
		}
	}
	return ""
}

func unwrap(e parser.Expr) parser.Expr {
	for {
		switch p := e.(type) {
		case *parser.ParenExpr:
			e = p.Expr
		case *parser.StepInvariantExpr:
			e = p.Expr
		default:
			return e
		}
	}
}

func (c *labelCheck) call(call *parser.Call) labelSet {
	var in labelSet // the labels of the first vector argument
	seen := false
	for _, arg := range call.Args {
		s := c.labels(arg)
		if t := arg.Type(); !seen && (t == parser.ValueTypeVector || t == parser.ValueTypeMatrix) {
			in, seen = s, true
		}
	}
	if !seen {
		in = labelSet{} // vector(1), time(), ...
	}
	name := call.Func.Name
	switch name {
	case "label_replace":
		if src := stringArg(call, 3); src != "" {
			c.missing(in, src, name+"'s source", call.Args[0])
		}
		return in.with(stringArg(call, 1))
	case "label_join":
		for i := 3; i < len(call.Args); i++ {
			c.missing(in, stringArg(call, i), name+"'s source", call.Args[0])
		}
		return in.with(stringArg(call, 1))
	case "sort_by_label", "sort_by_label_desc":
		for i := 1; i < len(call.Args); i++ {
			c.missing(in, stringArg(call, i), name, call.Args[0])
		}
	case "histogram_quantile", "histogram_fraction":
		last := call.Args[len(call.Args)-1]
		c.missing(in, "le", name, last)
		return in.without("le")
	case "absent", "absent_over_time":
		return absentLabels(call)
	}
	return in
}

// absentLabels are the labels absent gives its one series: those its
// selector matches exactly.
func absentLabels(call *parser.Call) labelSet {
	s := labelSet{}
	parser.Inspect(call, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			for _, m := range vs.LabelMatchers {
				if m.Name != "__name__" && m.Type.String() == "=" {
					s[m.Name] = true
				}
			}
		}
		return nil
	})
	return s
}

func (c *labelCheck) binary(b *parser.BinaryExpr) labelSet {
	l, r := c.labels(b.LHS), c.labels(b.RHS)
	switch {
	case b.LHS.Type() == parser.ValueTypeScalar && b.RHS.Type() == parser.ValueTypeScalar:
		return labelSet{}
	case b.LHS.Type() == parser.ValueTypeScalar:
		return r
	case b.RHS.Type() == parser.ValueTypeScalar || b.VectorMatching == nil:
		return l
	}
	vm := b.VectorMatching
	op := b.Op.String()
	for _, name := range vm.MatchingLabels {
		if vm.On {
			c.missing(l, name, op+" on ("+name+")", b.LHS)
			c.missing(r, name, op+" on ("+name+")", b.RHS)
		} else if !l.has(name) && !r.has(name) {
			c.missing(l.with(r.keys()...), name, op+" ignoring ("+name+")", b)
		}
	}
	switch {
	case b.Op == parser.LAND || b.Op == parser.LUNLESS:
		return l
	case b.Op == parser.LOR:
		return l.with(r.keys()...)
	case vm.Card == parser.CardManyToOne:
		c.included(r, vm.Include, op+" group_left", b.RHS)
		return l.with(vm.Include...)
	case vm.Card == parser.CardOneToMany:
		c.included(l, vm.Include, op+" group_right", b.LHS)
		return r.with(vm.Include...)
	case vm.On:
		return setOf(vm.MatchingLabels...)
	}
	return l.without(vm.MatchingLabels...)
}

func (c *labelCheck) included(one labelSet, include []string, how string, e parser.Expr) {
	for _, name := range include {
		c.missing(one, name, how+" ("+name+")", e)
	}
}

func (s labelSet) keys() []string { return slices.Sorted(maps.Keys(s)) }

// CheckLabels checks that every label the queries use with a metric, in a
// matcher, in by (...) or without (...), in on (...), ignoring (...) or
// group_left (...), or as the label a function reads, is a label of that
// metric's series. exposed holds the labels of each sample name the worker
// exposes (a histogram's _bucket with le); Prometheus adds ScrapeLabels
// to them, and up has those alone. A recording rule's output is a metric
// with the labels its expression keeps and those the rule sets. The
// problems come back one line each; an error is a query that does not
// parse.
func CheckLabels(qs []Query, exposed map[string][]string) ([]string, error) {
	metrics := map[string]labelSet{"up": setOf(ScrapeLabels...)}
	for name, labels := range exposed {
		metrics[name] = setOf(labels...).with(ScrapeLabels...)
	}
	// The recording rules first, in their order, so that the queries that
	// use their outputs find them.
	ordered := slices.Clone(qs)
	slices.SortStableFunc(ordered, func(a, b Query) int { return recordFirst(a) - recordFirst(b) })
	var problems []string
	for _, q := range ordered {
		e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVariables.Replace(q.Expr))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", q.Where, err)
		}
		c := &labelCheck{metrics: metrics, where: q.Where}
		out := c.labels(e)
		problems = append(problems, c.problems...)
		if q.Record != "" {
			metrics[q.Record] = out.with(slices.Collect(maps.Keys(q.Labels))...)
		}
	}
	return problems, nil
}

// recordFirst orders the recording rules before the other queries.
func recordFirst(q Query) int {
	if q.Record != "" {
		return 0
	}
	return 1
}
