package config

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// mergeTag is the tag the YAML decoder gives a merge key (<<).
const mergeTag = "!!merge"

// noDeepMerges refuses a map written next to a merge key (<<) under a
// key the merged map has too, with a map there as well. A merge is one
// level deep: the map written replaces the merged one whole, and what it
// does not repeat is gone. guards: {<<: *g, protect: {computerDnsNames:
// [dc*]}} kept no tag or group of *g's protect, and the devices they
// protected were offboarded. A scalar or a list written over a merged
// one replaces it as anyone reads it, and the same map named again
// loses nothing.
func noDeepMerges(doc *yaml.Node) error {
	var err error
	walkNodes(doc, func(_, n *yaml.Node, path string) bool {
		if n.Kind != yaml.MappingNode {
			return false
		}
		merged := mergedMaps(n)
		for i := 0; i+1 < len(n.Content) && len(merged) > 0; i += 2 {
			k, v := n.Content[i], resolveAlias(n.Content[i+1])
			if k.Tag == mergeTag || v.Kind != yaml.MappingNode {
				continue
			}
			if m, ok := merged[k.Value]; ok && m != v {
				err = fmt.Errorf("line %d: %s replaces the %s merged in with << whole (a YAML merge is one level deep): what it does not repeat is not kept; write the whole %s here, or leave it to the merge",
					k.Line, joinPath(path, k.Value), k.Value, k.Value)
				return true
			}
		}
		return false
	})
	return err
}

// mergedMaps is, for each key of the maps merged into the map n (<<:
// *a, or <<: [*a, *b], and those they merge in turn), its value where
// that is a map.
func mergedMaps(n *yaml.Node) map[string]*yaml.Node {
	var maps map[string]*yaml.Node
	var add func(m *yaml.Node, depth int)
	add = func(m *yaml.Node, depth int) {
		m = resolveAlias(m)
		switch {
		case depth > maxMergeDepth:
		case m.Kind == yaml.SequenceNode:
			for _, c := range m.Content {
				add(c, depth+1)
			}
		case m.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(m.Content); i += 2 {
				k, v := m.Content[i], resolveAlias(m.Content[i+1])
				if k.Tag == mergeTag {
					add(v, depth+1)
				} else if v.Kind == yaml.MappingNode {
					if maps == nil {
						maps = map[string]*yaml.Node{}
					}
					maps[k.Value] = v
				}
			}
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Tag == mergeTag {
			add(n.Content[i+1], 0)
		}
	}
	return maps
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
