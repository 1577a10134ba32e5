package config

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// mergeTag is the tag the YAML decoder gives a merge key (<<).
const mergeTag = "!!merge"

// noDeepMerges refuses a map written next to a merge key (<<) under a
// key the merged map has too, with a map there as well, that leaves out
// one of the merged map's keys, at any depth. A merge is one level deep:
// the map written replaces the merged one whole, and what it does not
// repeat is gone. guards: {<<: *g, protect: {computerDnsNames: [dc*]}}
// kept no tag or group of *g's protect, and the devices they protected
// were offboarded. A map that repeats every key, or merges the same map
// in turn (protect: {<<: *p, ...}), loses nothing; nor does a scalar or
// a list written over a merged one, which replaces it as anyone reads it.
func noDeepMerges(doc *yaml.Node) error {
	var err error
	walkNodes(doc, func(_, n *yaml.Node, path string) bool {
		if n.Kind != yaml.MappingNode {
			return false
		}
		merged := entries(n, true)
		for i := 0; i+1 < len(n.Content) && len(merged) > 0; i += 2 {
			k, v := n.Content[i], resolveAlias(n.Content[i+1])
			m, ok := merged[k.Value]
			if k.Tag == mergeTag || !ok || v.Kind != yaml.MappingNode || m.Kind != yaml.MappingNode {
				continue
			}
			if left := leftOut(v, m, 0); left != "" {
				err = fmt.Errorf("line %d: %s replaces the %s merged in with << whole (a YAML merge is one level deep): it leaves out %s, which is not kept; write it here too (merge it in: %s: {<<: *anchor, ...}), or leave %s to the merge",
					k.Line, joinPath(path, k.Value), k.Value, left, k.Value, k.Value)
				return true
			}
		}
		return false
	})
	return err
}

// leftOut is the first key of the merged map m, as a path, that the map
// written v does not have, those they merge in included; "" when none.
func leftOut(v, m *yaml.Node, depth int) string {
	if v == m || depth > maxMergeDepth {
		return ""
	}
	have, want := entries(v, false), entries(m, false)
	for _, k := range keysOf(m) {
		got, ok := have[k]
		if !ok {
			return k
		}
		if mv := want[k]; got.Kind == yaml.MappingNode && mv.Kind == yaml.MappingNode {
			if left := leftOut(got, mv, depth+1); left != "" {
				return k + "." + left
			}
		}
	}
	return ""
}

// keysOf is the keys of the map n, those merged in included, in the order
// they are written.
func keysOf(n *yaml.Node) []string {
	var keys []string
	seen := map[string]bool{}
	eachEntry(n, false, 0, func(k string, _ *yaml.Node) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	})
	return keys
}

// entries is the value of each key of the map n as the decoder reads it:
// a key written wins over a merged one, and an earlier map of a merged
// list over a later one. With mergedOnly, the keys merged in (<<: *a, or
// <<: [*a, *b], and those they merge in turn) alone.
func entries(n *yaml.Node, mergedOnly bool) map[string]*yaml.Node {
	var e map[string]*yaml.Node
	eachEntry(n, mergedOnly, 0, func(k string, v *yaml.Node) {
		if e == nil {
			e = map[string]*yaml.Node{}
		}
		if _, ok := e[k]; !ok {
			e[k] = v
		}
	})
	return e
}

// eachEntry calls fn with each key of the map n and its value, an alias
// resolved: those written first, then those merged in, in the order the
// decoder gives them precedence. With mergedOnly, the merged ones alone.
func eachEntry(n *yaml.Node, mergedOnly bool, depth int, fn func(k string, v *yaml.Node)) {
	n = resolveAlias(n)
	switch {
	case depth > maxMergeDepth:
	case n.Kind == yaml.SequenceNode:
		for _, c := range n.Content {
			eachEntry(c, false, depth+1, fn)
		}
	case n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content) && !mergedOnly; i += 2 {
			if n.Content[i].Tag != mergeTag {
				fn(n.Content[i].Value, resolveAlias(n.Content[i+1]))
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Tag == mergeTag {
				eachEntry(n.Content[i+1], false, depth+1, fn)
			}
		}
	}
}

// maxMergeDepth bounds the merges followed within merges: the decoder
// refuses a document that aliases more than it reads, and a file of
// tenants has no use for more.
const maxMergeDepth = 32

// resolveAlias is the node an alias stands for, n itself if it is none.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < maxMergeDepth; i++ {
		n = n.Alias
	}
	return n
}
